"""Scheduled work inside `xai-usage serve`: the daily sync at 06:00 UTC."""

from __future__ import annotations

import asyncio
import logging
import os

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from bot.runtime import Runtime

log = logging.getLogger(__name__)


def daily_sync(runtime: Runtime) -> None:
    results = asyncio.run(runtime.engine.sync_all(trigger="daily"))
    failed = [r for r in results if not r.ok and not r.skipped]
    log.info("daily sync: %d connections, %d failed", len(results), len(failed))


def start_scheduler(runtime: Runtime) -> BackgroundScheduler:
    at = os.environ.get("XAI_USAGE_DAILY_SYNC_AT", "06:00")
    hour, _, minute = at.partition(":")
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(
        daily_sync,
        CronTrigger(hour=int(hour), minute=int(minute or 0), timezone="UTC"),
        args=[runtime],
        id="daily_sync",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=3600,
    )
    scheduler.start()
    return scheduler
