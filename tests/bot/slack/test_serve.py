"""`xai-usage serve` as an operator starts it: a real process, real sockets."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest

from storage.crypto import Keyring
from storage.db import Database
from tests.bot.slack.conftest import BOT_TOKEN, SIGNING_SECRET, TEAM, sign, text_of
from tests.conftest import Finished, xai_usage_in_process
from tests.fakes.slack_api import SlackStandIn

ROOT = Path(__file__).parents[3]
APP_TOKEN = "xapp-1-A0001-1234-socketmodetoken"


@pytest.fixture
def stand_in():
    with SlackStandIn(team_id=TEAM) as slack:
        slack.add_token(BOT_TOKEN)
        slack.add_user("UADMIN", is_admin=True)
        yield slack


@pytest.fixture
def env(tmp_path: Path, stand_in: SlackStandIn) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    return {
        **base,
        "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
        "HOST": "127.0.0.1",
        "SLACK_API_URL": stand_in.api_url,
        "XAI_USAGE_NO_PLUGINS": "1",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }


def start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "serve", *args],
        env=env,
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen, pattern: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return line
    process.kill()
    raise AssertionError(f"never saw {pattern!r}; stderr was:\n{''.join(seen)}")


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def test_http_mode_serves_health_and_signed_commands(env, stand_in) -> None:
    process = start(env, "--http", "--port", "0")
    try:
        line = wait_for_line(process, r"serving Slack \(http://")
        url = re.search(r"(http://[\d.]+:\d+)", line).group(1)
        health = httpx.get(f"{url}/healthz", timeout=5)
        assert health.status_code == 200 and health.json()["database"] == "up"
        response_url = stand_in.response_url()
        body = urlencode(
            {
                "command": "/xai-usage",
                "text": "status",
                "team_id": TEAM,
                "user_id": "UADMIN",
                "response_url": response_url,
                "trigger_id": "t.1",
                "channel_id": "C1",
            }
        )
        answer = httpx.post(f"{url}/slack/events", content=body, headers=sign(body), timeout=5)
        assert answer.status_code == 200
        stand_in.wait_for(lambda: stand_in.responses)
        assert "Nothing is connected yet" in text_of(stand_in.responses[0].payload)
        unsigned = httpx.post(
            f"{url}/slack/events",
            content=body,
            timeout=5,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert unsigned.status_code == 401
    finally:
        stop(process)


def test_socket_mode_starts_with_the_app_token(env, stand_in) -> None:
    stand_in.add_token(APP_TOKEN)
    process = start({**env, "SLACK_APP_TOKEN": APP_TOKEN})
    try:
        wait_for_line(process, r"serving Slack \(Socket Mode\)")
        stand_in.wait_for(lambda: stand_in.calls_to("apps.connections.open"), timeout=15)
        assert stand_in.calls_to("apps.connections.open")[0].token == APP_TOKEN
    finally:
        stop(process)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN is not set"),
        ({"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET is not set"),
        ({"SLACK_CLIENT_ID": "1.2", "SLACK_CLIENT_SECRET": "s"}, "Both SLACK_BOT_TOKEN"),
        ({"SLACK_CLIENT_ID": "1.2"}, "SLACK_CLIENT_SECRET is not set"),
        ({"SLACK_BOT_TOKEN": "xoxp-user-token-123"}, "must be a bot token"),
        ({"SLACK_BOT_TOKEN": "xoxb-not-known-to-slack"}, "SLACK_BOT_TOKEN"),
        ({"PORT": "eighty"}, "PORT must be a port number"),
        ({"SLACK_API_URL": "http://127.0.0.1:9/api/"}, "Could not reach Slack"),
    ],
)
def test_bad_configuration_is_one_clear_line(env, change, message) -> None:
    # In this process (a fresh interpreter costs more than the check): every case stops at
    # its configuration, so main() returns; one that went on to serve would not, so it runs
    # in a thread with a deadline.
    finished: list[Finished] = []
    thread = threading.Thread(
        target=lambda: finished.append(xai_usage_in_process({**env, **change}, "serve", "--http")),
        daemon=True,
    )
    thread.start()
    thread.join(30)
    assert finished, "serve went past its configuration and is serving"
    [done] = finished
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_health_says_503_when_the_database_is_down(tmp_path) -> None:
    from bot.config import Settings
    from bot.runtime import Runtime
    from bot.slack.server import wsgi_app

    runtime = Runtime(Settings.from_env({"XAI_USAGE_DATA_DIR": str(tmp_path)}))
    runtime.__dict__["db"] = Database(
        "postgresql://nobody@127.0.0.1:1/none", Keyring([Keyring.generate_key()])
    )
    statuses = []
    body = wsgi_app(None, runtime, SIGNING_SECRET)(
        {"PATH_INFO": "/healthz", "REQUEST_METHOD": "GET"},
        lambda status, headers: statuses.append(status),
    )
    assert statuses == ["503 Service Unavailable"] and b'"down"' in b"".join(body)


def test_serve_without_its_scheduler_leaves_the_scheduled_work_to_a_worker(env, stand_in) -> None:
    """The split an operator makes behind a load balancer: Slack fronts that do no scheduled
    work, and a worker that does it all (the daily sync, digests), with Slack's tokens."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import select

    from bot.config import Settings
    from bot.runtime import Runtime
    from providers.xai.sandbox import Sandbox
    from storage.models import Delivery, DigestSubscription, SyncRun
    from storage.repo import workspace_for_slack_team
    from tests.fakes.connections import connect_demo

    stand_in.add_channel("CCOSTS", "costs")
    with Sandbox() as xai:
        env = {**env, "XAI_MANAGEMENT_API_URL": xai.url, "XAI_USAGE_DAILY_SYNC_AT": "00:00"}
        runtime = Runtime(Settings.from_env(env))
        now = datetime.now(UTC)
        with runtime.db.transaction() as session:
            workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
            session.add(  # due a minute ago, every day
                DigestSubscription(
                    workspace_id=workspace_id,
                    channel_id="CCOSTS",
                    at_time=f"{now - timedelta(minutes=1):%H:%M}",
                    tz="UTC",
                    created_by="UADMIN",
                    created_at=now - timedelta(days=2),
                )
            )
        connect_demo(runtime.engine, workspace_id, 3)

        def daily_runs() -> list[str | None]:
            with runtime.db.session() as session:
                return list(
                    session.scalars(select(SyncRun.worker).where(SyncRun.trigger == "daily"))
                )

        web = start(env, "--http", "--port", "0", "--no-scheduler")
        worker = None
        try:
            wait_for_line(web, r"serving Slack \(http://.*left to `xai-usage worker`")
            time.sleep(1.5)  # a scheduler would have done its first minute's work by now
            with runtime.db.session() as session:
                assert session.scalars(select(Delivery.key)).all() == []
            assert daily_runs() == [] and stand_in.calls_to("chat.postMessage") == []

            worker = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "worker"],
                env=env,
                cwd=ROOT,
                stderr=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            line = wait_for_line(worker, r"running the scheduled work as \S+:\d+")
            name = re.search(r"as (\S+:\d+)", line).group(1)
            assert name.endswith(f":{worker.pid}")
            stand_in.wait_for(lambda: stand_in.calls_to("chat.postMessage"), timeout=20)
            deadline = time.monotonic() + 20
            while not daily_runs() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert daily_runs() == [name]  # the worker's, not the front's
            [digest] = stand_in.calls_to("chat.postMessage")
            assert digest.params["channel"] == "CCOSTS"
        finally:
            stop(web)
            if worker is not None:
                stop(worker)
            runtime.close()
