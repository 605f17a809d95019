"""The xAI stand-in in a process of its own, driven over its HTTP control endpoints.

In the benchmark's own process the stand-in's Python (JSON, Decimal figures,
a thread per connection) would share the GIL with the sync engine and be
billed to it. In a separate process it behaves like the remote service it
stands in for: the engine pays only for waiting on the wire.

Run as ``python -m bench.sandbox_process LATENCY``: prints the URL once
serving, stops on SIGINT.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class SandboxProcess:
    """Start, control and stop a stand-in in a child process."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._control: httpx.Client | None = None

    def __enter__(self) -> SandboxProcess:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_process", str(self.latency)],
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("http://"):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the stand-in did not start (it printed {line!r})")
        self.url = line
        self._control = httpx.Client(base_url=self.url, timeout=30)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._control is not None:
            self._control.close()
        process, self._process = self._process, None
        if process is None:
            return
        process.send_signal(signal.SIGINT)  # serve_forever stops cleanly on Ctrl-C
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # control

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        assert self._control is not None, "use SandboxProcess as a context manager"
        response = self._control.request(method, f"/__sandbox__/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def add_key(self, key: str, team_id: str, *, name: str = "xai-usage bench") -> None:
        self._call("POST", "keys", {"key": key, "team_id": team_id, "name": name})

    def requests(self) -> list[dict[str, Any]]:
        """Every API request served so far: method, path and status (never headers)."""
        return self._call("GET", "requests")["requests"]

    def request_count(self) -> int:
        return int(self._call("GET", "requests")["count"])

    def requests_since(self, count: int) -> list[dict[str, Any]]:
        return self.requests()[count:]

    # measuring

    def cpu_seconds(self) -> float | None:
        """CPU time the stand-in has used (user + system), or None off Linux."""
        if self._process is None:
            return None
        try:
            with open(f"/proc/{self._process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # Fields 14 and 15 of stat(5), counted after the ")" that ends field 2.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def by_endpoint(requests: list[dict[str, Any]]) -> Counter[str]:
    """``{"usage": 500, "invoice/preview": 500, ...}`` with non-200 answers counted apart."""
    counts: Counter[str] = Counter()
    for request in requests:
        path = request["path"].partition("?")[0]
        name = path.split("/postpaid/", 1)[1] if "/postpaid/" in path else path.rsplit("/", 1)[-1]
        counts[name if request["status"] == 200 else f"{name} (HTTP {request['status']})"] += 1
    return counts


def main() -> None:
    from providers.xai.sandbox import serve_forever

    latency = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    serve_forever("127.0.0.1", 0, latency, ready=lambda url: print(url, flush=True))


if __name__ == "__main__":
    main()
