"""``xai-usage serve``: the Slack app with its scheduler.

Socket Mode when SLACK_APP_TOKEN is set (no public URL needed), otherwise
HTTP on waitress, a production WSGI server: POST /slack/events, the OAuth
install paths, and GET /healthz (200 only when the database answers).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.runtime import Runtime
from bot.scheduler import start_scheduler
from bot.slack.app import build_app, token_resolver
from bot.slack.delivery import SlackDelivery
from bot.slack.settings import SlackSettings

log = logging.getLogger(__name__)


def wsgi_app(app: App, runtime: Runtime) -> Callable[..., Iterable[bytes]]:
    slack = SlackRequestHandler(app)

    def application(environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            healthy = database_answers(runtime)
            body = json.dumps({"ok": healthy, "database": "up" if healthy else "down"}).encode()
            start_response(
                "200 OK" if healthy else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return slack(environ, start_response)

    return application


def database_answers(runtime: Runtime) -> bool:
    try:
        with runtime.db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:  # any failure means "not healthy"
        log.warning("health check: the database does not answer")
        return False


def stop_waitress(server: Any) -> None:
    """Stop a waitress server from another thread.

    ``close()`` alone leaves waitress's wake-up channel in its loop, which
    then never ends; closing every channel lets ``run()`` return.
    """

    def close_all() -> None:  # runs on waitress's own loop thread
        for channel in list(server._map.values()):
            channel.close()

    server.task_dispatcher.shutdown(timeout=5)
    server.trigger.pull_trigger(close_all)


def serve(
    runtime: Runtime,
    settings: SlackSettings,
    *,
    host: str = "0.0.0.0",
    ready: Callable[[str], None] | None = None,
) -> None:
    app, _ = build_app(runtime, settings)
    scheduler = start_scheduler(runtime, SlackDelivery(settings, token_resolver(runtime, settings)))
    try:
        if settings.mode == "socket":
            handler = SocketModeHandler(app, settings.app_token)
            if ready:
                ready("Socket Mode")
            handler.start()
        else:
            import waitress

            server = waitress.create_server(
                wsgi_app(app, runtime), host=host, port=settings.port, threads=16, ident="xai-usage"
            )
            if ready:
                ready(f"http://{host}:{server.effective_port}")
            server.run()
    finally:
        scheduler.shutdown(wait=False)
