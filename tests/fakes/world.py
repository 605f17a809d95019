"""A whole xai-usage deployment in one test: the store, the xAI and Slack stand-ins, a clock.

``World`` runs ``xai-usage jobs run --at T`` as cron would, so tests move through days
and read what Slack was sent. The ``world`` fixture (tests/bot/conftest.py) builds one
with a team connected and backfilled.
"""

from __future__ import annotations

import io
from datetime import UTC, date, datetime

from bot.cli import Console, main
from bot.config import Settings
from bot.runtime import Runtime
from providers.xai.sandbox import Sandbox
from storage.models import AlertRoute, DigestSubscription
from tests.conftest import FixedClock
from tests.fakes.slack_api import SlackStandIn

ANCHOR = date(2026, 10, 22)  # the stand-in's spike: 10 days before, Monday 12 October
ADMIN = "UADMIN"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class World:
    """The bot, its store, the xAI and Slack stand-ins, and a clock we move."""

    def __init__(
        self, env: dict[str, str], clock: FixedClock, xai: Sandbox, slack: SlackStandIn
    ) -> None:
        self.env, self.clock, self.xai, self.slack = env, clock, xai, slack

    def runtime(self) -> Runtime:
        return Runtime(Settings.from_env(self.env), clock=self.clock)

    def jobs(self, when: datetime) -> str:
        self.clock.now = when
        out = io.StringIO()
        self.code = main(
            ["jobs", "run", "--at", when.isoformat()],
            environ=self.env,
            console=Console(out=out, err=out),
        )
        return out.getvalue()

    def posts(self, channel: str) -> list[dict]:
        """What was posted in ``channel`` (a user's id: their DM with the app, threads too),
        a digest's chart aside (:meth:`charts`)."""
        dm = "D" + channel[1:] if channel.startswith("U") else None
        return [
            c.params
            for c in self.slack.calls_to("chat.postMessage")
            if c.params.get("channel") in (channel, dm) and not _chart(c.params)
        ]

    def charts(self, channel: str) -> list[dict]:
        """The native charts posted in ``channel``, each after its digest."""
        return [
            c.params
            for c in self.slack.calls_to("chat.postMessage")
            if c.params.get("channel") == channel and _chart(c.params)
        ]


def _chart(params: dict) -> bool:
    blocks = params.get("blocks") or []
    return bool(blocks) and blocks[0].get("type") == "data_visualization"


def route_alerts(w: World, channel: str) -> None:
    """The workspace's alerts go to ``channel``."""
    with w.runtime().db.transaction() as session:
        session.add(
            AlertRoute(
                workspace_id=w.workspace_id, connection_key=0, channel_id=channel, created_by=ADMIN
            )
        )


def subscribe(w: World, channel: str = "CCOSTS", **fields) -> int:
    runtime = w.runtime()
    with runtime.db.transaction() as session:
        sub = DigestSubscription(
            workspace_id=w.workspace_id,
            channel_id=channel,
            created_by=ADMIN,
            created_at=w.clock.now,
            **fields,
        )
        session.add(sub)
        session.flush()
        return sub.id
