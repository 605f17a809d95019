"""A local incoming-webhook endpoint, served over real HTTP on a free port."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes.servers import serving


@contextlib.contextmanager
def webhook_server(answer: Callable[[str, bytes], int]) -> Iterator[ThreadingHTTPServer]:
    """Serve POSTs until the block ends; ``answer(path, body)`` gives each one's status."""

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(answer(self.path, body))
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with serving(ThreadingHTTPServer(("127.0.0.1", 0), Hook)) as server:
        yield server
