"""A local stand-in for Acme's API (standard library only), with deterministic costs."""

from __future__ import annotations

import json
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

DEMO_TOKEN = "acme-demo-token-0001"
ACCOUNTS = {"us": ("acct_us_1", "Acme Corp"), "eu": ("acct_eu_7", "Acme Europe")}
MODELS = ("acme-large", "acme-small")


def cost(account: str, model: str, day: date) -> Decimal:
    """What the stand-in serves for a model on a day: exact, to the micro-dollar."""
    base = Decimal("3.141592") if model == "acme-large" else Decimal("0.271828")
    return base * (day.toordinal() % 5 + 1) + Decimal(len(account)) / 1000


class AcmeStandIn:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.tokens = {DEMO_TOKEN}
        self.requests: list[str] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                stand_in.requests.append(url.path)
                token = self.headers.get("Authorization", "").removeprefix("Bearer ")
                region = self.headers.get("Acme-Region", "us")
                if token not in stand_in.tokens:
                    return self._send(401, {"error": "expired"})
                if region not in ACCOUNTS:
                    return self._send(404, {"error": "no such account"})
                account, name = ACCOUNTS[region]
                if url.path == "/whoami":
                    return self._send(200, {"account": account, "name": name})
                query = parse_qs(url.query)
                start = date.fromisoformat(query["from"][0])
                end = date.fromisoformat(query["to"][0])
                today = datetime.now(UTC).date()
                costs = []
                day = start
                while day < min(end, today + timedelta(days=1)):
                    for model in MODELS:
                        usd = cost(account, model, day)
                        costs.append({"day": day.isoformat(), "model": model, "usd": str(usd)})
                    day += timedelta(days=1)
                self._send(200, {"costs": costs})

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._thread: threading.Thread | None = None
        self.url = ""

    @property
    def demo_credentials(self) -> dict[str, str]:
        return {"api_token": DEMO_TOKEN, "region": "eu"}

    def start(self) -> AcmeStandIn:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> AcmeStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
