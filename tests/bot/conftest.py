"""Fixtures for the host's end-to-end tests: a whole deployment (tests/fakes/world.py)."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path

import pytest

from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, Sandbox
from storage.repo import workspace_for_slack_team
from tests.bot.slack.conftest import BOT_TOKEN, TEAM
from tests.conftest import FixedClock
from tests.fakes.slack_api import SlackStandIn
from tests.fakes.world import ADMIN, ANCHOR, World, at


@pytest.fixture
def world(tmp_path, db, store_key, monkeypatch):
    import bot.slack.delivery
    import bot.webhooks

    # Pacing and webhook retries keep their logic, at a fiftieth of the real waits: they are
    # timed for real in tests/bot/slack/test_delivery.py, and here they were a quarter of the time.
    monkeypatch.setattr(bot.slack.delivery, "PER_CHANNEL_INTERVAL", 0.02)
    monkeypatch.setattr(bot.webhooks, "RETRY_DELAY", 0.01)
    clock = FixedClock(at("2026-10-20T07:00:00"))
    with Sandbox(clock=clock, anchor=ANCHOR) as xai, SlackStandIn(team_id=TEAM) as slack:
        slack.add_token(BOT_TOKEN)
        slack.add_user(ADMIN, is_admin=True, tz="Europe/London")
        slack.add_channel("CCOSTS", "costs")
        slack.add_channel("CALERTS", "alerts")
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))},
            "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
            "DATABASE_URL": db.url,
            "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(store_key).decode(),
            "XAI_MANAGEMENT_API_URL": xai.url,
            "SLACK_API_URL": slack.api_url,
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            # Nothing here waits for it (the faults are refusals, answered at once): it is
            # headroom for a loaded machine, where a sync under 2 s once missed it.
            "XAI_USAGE_HTTP_DEADLINE": "10",
            "XAI_USAGE_NO_PLUGINS": "1",
            # The webhook receivers here listen on 127.0.0.1, which alerts refuse without it.
            "XAI_USAGE_WEBHOOKS_ALLOW_PRIVATE": "1",
        }
        w = World(env, clock, xai, slack)
        runtime = w.runtime()
        with runtime.db.transaction() as session:
            workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
        asyncio.run(
            runtime.engine.connect(
                workspace_id,
                "xai",
                {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY},
                label="Production — xAI",
                backfill_days=60,
                created_by=ADMIN,
            )
        )
        w.workspace_id = workspace_id
        runtime.close()
        yield w
        # Every message and view `jobs run` sent stayed within Slack's Block Kit limits,
        # tables and charts included (a refusal asked of the stand-in is not a violation).
        assert slack.violations == []


@pytest.fixture
def live_sandbox():
    with Sandbox() as stand_in:  # real clock: the CLI runs in its own process
        yield stand_in


@pytest.fixture
def cli_env(tmp_path: Path, live_sandbox: Sandbox, db) -> dict[str, str]:
    """The CLI's environment; ``db`` migrates the store and cleans it afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    env.update(
        XAI_USAGE_DATA_DIR=str(tmp_path / "data"),
        XAI_MANAGEMENT_API_URL=live_sandbox.url,
        XAI_USAGE_LOG_LEVEL="DEBUG",  # the secrets test reads everything that is logged
        XAI_USAGE_NO_PLUGINS="1",
        XAI_USAGE_HTTP_DEADLINE="2",  # an outage is declared after 2 s of retries, not 60
    )
    if db.backend == "postgresql":
        env["DATABASE_URL"] = db.url
    return env
