"""Scheduled work inside `xai-usage serve`: everything due, every minute.

The daily sync, digests and alerts all go through ``bot.jobs.run_due``,
whose ledger makes each happen once however many processes run this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler

from bot.jobs import Outbox, run_due
from bot.runtime import Runtime

log = logging.getLogger(__name__)


def tick(
    runtime: Runtime,
    delivery: Outbox | None,
    daily_sync_at: str,
    after: Callable[[], None] | None = None,
) -> None:
    """Everything due now; then ``after`` (serve's: re-publish the Home tabs that changed)."""
    try:
        _due(runtime, delivery, daily_sync_at)
    finally:
        if after is not None:
            try:
                after()
            except Exception:
                log.exception("the after-tick work failed; the next minute retries")


def _due(runtime: Runtime, delivery: Outbox | None, daily_sync_at: str) -> None:
    try:
        outcome = run_due(runtime, datetime.now(UTC), delivery, daily_sync_at=daily_sync_at)
    except Exception:  # one bad minute must not stop the next
        log.exception("scheduled work failed; the next minute retries")
        return
    if outcome.synced is not None or outcome.digests or outcome.alerts or outcome.problems:
        log.info(
            "scheduled: synced %d, digests %d, alerts %d, problems %s",
            outcome.synced or 0,
            len(outcome.digests),
            len(outcome.alerts),
            outcome.problems,
        )
    if outcome.pending:  # retried every minute: the reasons, for whoever reads the log
        log.info("alerts pending: %s", outcome.pending)
    if outcome.expired:
        log.warning("alerts expired undelivered after 7 days: %s", outcome.expired)


def start_scheduler(
    runtime: Runtime, delivery: Outbox | None, after_tick: Callable[[], None] | None = None
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        tick,
        "cron",
        second=5,
        args=[runtime, delivery, runtime.settings.daily_sync_at, after_tick],
        id="due_work",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=50,
    )
    scheduler.start()
    return scheduler
