"""The Slack benchmark's sender, in a process of its own: signs slash commands, sends
them one at a time, and times each to its HTTP 200.

The Slack stand-in lives in the benchmark's process, where it checks every reply and
view our app sends against Block Kit's limits (seconds of Python under a flood of
``status`` answers). A sender sharing that interpreter timed the stand-in's work as our
app's acknowledgements, and only ours: the app that only acks sends nothing to check.
Here the clock runs in a process that does nothing else.

Run as ``python -m bench.slack_sender``: reads one job as JSON on stdin (see
:func:`run`), writes the series it measured as JSON on stdout.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
from slack_sdk.signature import SignatureVerifier


class Sender:
    """Sends signed slash commands to one app, one at a time, and times them."""

    def __init__(self, url: str, job: dict[str, Any], response_urls: Iterator[str]) -> None:
        self.url = f"{url}/slack/events"
        self.job = job
        self.response_urls = response_urls
        self.http = httpx.Client(timeout=30)
        self.signer = SignatureVerifier(job["signing_secret"])

    def command(self, text: str, series: dict[str, list]) -> None:
        response_url = next(self.response_urls)
        trigger_id = f"bench.{time.monotonic_ns()}"
        body = urlencode(
            {
                **self.job["fields"],
                "text": text,
                "response_url": response_url,
                "trigger_id": trigger_id,
            }
        )
        timestamp = str(int(time.time()))
        headers = {
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": self.signer.generate_signature(timestamp=timestamp, body=body),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        series["sent_at"].append(time.monotonic())  # the stand-in's clock (system-wide)
        began = time.perf_counter()
        response = self.http.post(self.url, content=body, headers=headers)
        series["timings"].append(time.perf_counter() - began)
        series["statuses"].append(response.status_code)
        series["url_ids"].append(response_url.rsplit("/", 1)[-1])
        series["trigger_ids"].append(trigger_id)


def _series() -> dict[str, list]:
    return {"timings": [], "statuses": [], "url_ids": [], "trigger_ids": [], "sent_at": []}


def _failed(series: dict[str, list]) -> int:
    return sum(1 for status in series["statuses"] if status != 200)


def run(job: dict[str, Any]) -> dict[str, Any]:
    """``job``: ``urls`` (one app's, or ours and the minimal app's to send to in turn),
    ``commands`` ([name, text] pairs), ``requests`` per command, ``budget`` seconds per
    series, ``max_failed``, ``response_urls`` issued by the stand-in (one per request),
    ``signing_secret`` and the slash command's other ``fields``. Returns a series per app
    and command."""
    urls = iter(job["response_urls"])
    senders = [Sender(url, job, urls) for url in job["urls"]]
    measured: list[dict[str, dict[str, list]]] = [{} for _ in senders]
    for name, text in job["commands"]:
        series = [m.setdefault(name, _series()) for m in measured]
        deadline = time.perf_counter() + job["budget"]
        while (
            len(series[-1]["timings"]) < job["requests"]
            and time.perf_counter() < deadline
            and _failed(series[-1]) < job["max_failed"]
        ):
            for sender, one in zip(senders, series, strict=True):
                sender.command(text, one)
    for sender in senders:
        sender.http.close()
    return {"series": measured}


def main() -> None:
    job = json.loads(sys.stdin.read())
    json.dump(run(job), sys.stdout)


if __name__ == "__main__":
    main()
