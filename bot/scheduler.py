"""Scheduled work, every minute: inside `xai-usage serve`, or on its own in `xai-usage worker`.

The daily sync, digests and alerts all go through ``bot.jobs.run_due``,
whose ledger makes each happen once however many processes run this, and
shares the daily sync out between them.
"""

from __future__ import annotations

import logging
import signal
import threading
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
    """Everything due, at once (a restarted process catches up without waiting for the
    minute), then five seconds into every minute."""
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
        next_run_time=datetime.now(UTC),
    )
    scheduler.start()
    return scheduler


def work_until_stopped(
    runtime: Runtime,
    delivery: Outbox | None,
    after_tick: Callable[[], None] | None = None,
    *,
    ready: Callable[[], None] | None = None,
    stop: threading.Event | None = None,
) -> None:
    """``xai-usage worker``: the scheduled work in a process of its own, until SIGTERM or
    Ctrl-C (or ``stop``). A share of the daily sync it held when stopped is taken over
    by another process once its lease runs out (``bot.jobs.DailyShare``)."""
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    scheduler = start_scheduler(runtime, delivery, after_tick)
    if ready is not None:
        ready()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=False)
