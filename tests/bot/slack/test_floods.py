"""A flood of requests costs the log a line a minute, not a line a request.

Waitress warns "Task queue depth is N" for every request that finds its
threads busy: a ``/healthz`` flood wrote 13,000 such lines in 15 seconds.
"""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from bot.slack.server import ThrottledLog, http_server, stop_waitress
from bot.slack.settings import HttpLimits


def slow_health(environ, start_response):
    time.sleep(0.02)  # busy threads: what a flood finds
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", "11")])
    return [b'{"ok":true}']


def test_a_flood_writes_a_line_a_minute_not_a_line_a_request(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue_log = logging.getLogger("waitress.queue")
    for earlier in [f for f in queue_log.filters if isinstance(f, ThrottledLog)]:
        queue_log.removeFilter(earlier)  # another test's server may have spent this minute's line
    server = http_server(slow_health, HttpLimits(), host="127.0.0.1", port=0, threads=2)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.effective_port}/healthz"
    caplog.set_level(logging.WARNING)
    caplog.clear()
    answers: list[int] = []

    def client() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(10):
                answers.append(http.get(url).status_code)

    clients = [threading.Thread(target=client) for _ in range(20)]
    try:
        for one in clients:
            one.start()
        for one in clients:
            one.join()
    finally:
        stop_waitress(server)
        thread.join(timeout=5)
    assert answers == [200] * 200  # every request answered
    queue = [r for r in caplog.records if r.name == "waitress.queue"]
    assert 1 <= len(queue) <= 2, len(queue)
    assert "Task queue depth" in queue[0].getMessage()
