"""A sync that fails leaves nothing running behind it.

Once in about ten ``sync`` runs against a provider that cut every answer off
(``limitReached``), the correct one-line failure was followed by ~290 lines of
"unhandled exception during asyncio.run() shutdown". The cause: a cut-off
window is split in halves fetched together, and when one half failed (a single
day still cut off) the other half ran on, orphaned. The sync ended, its HTTP
clients closed, and the orphan's next request raised "the client has been
closed" while asyncio.run() shut down. It shows only when the failing half
loses the race, so these tests make it lose every time.
"""

from __future__ import annotations

import asyncio
import gc
from datetime import date, timedelta

import httpx
import pytest

from bot.sync import SyncEngine
from providers.types import CostFetch, ProviderError, Reason, ResultTruncated

DAY = date(2026, 11, 20)


class CutOffProvider:
    """Cuts off any range longer than a day, and the first day even alone, at once;
    the second day answers only after a while, through the HTTP client it was given."""

    name = "cutoff"
    max_window_days = 31

    def __init__(self) -> None:
        self.finished: list[date] = []
        self.errors: list[BaseException] = []

    async def fetch_daily_costs(self, http, credentials, start, end, *, by_key=True):
        if (end - start).days > 1 or start == DAY:
            raise ResultTruncated()
        try:
            await asyncio.sleep(0.2)
            await http.get("http://127.0.0.1:9/never")  # the client may be closed by now
        except BaseException as error:
            self.errors.append(error)
            raise
        self.finished.append(start)
        return CostFetch(rows=(), by_key=by_key)


def test_a_failed_half_leaves_no_sibling_running(db) -> None:
    engine = SyncEngine(db, providers=None)  # type: ignore[arg-type]  # no provider looked up
    provider = CutOffProvider()

    async def fetch() -> list[asyncio.Task]:
        async with httpx.AsyncClient() as http:
            with pytest.raises(ProviderError) as failed:
                await engine._fetch_split(http, provider, {}, DAY, DAY + timedelta(days=2), True)
            assert failed.value.reason == Reason.TRUNCATED
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    assert asyncio.run(fetch()) == []  # the other half was ended, not left running
    assert provider.finished == []
    assert all(isinstance(e, asyncio.CancelledError) for e in provider.errors)


def test_a_sync_that_fails_that_way_logs_nothing_at_shutdown(
    db, caplog: pytest.LogCaptureFixture
) -> None:
    engine = SyncEngine(db, providers=None)  # type: ignore[arg-type]
    provider = CutOffProvider()

    async def fetch() -> None:
        async with httpx.AsyncClient() as http:
            with pytest.raises(ProviderError):
                await engine._fetch_split(http, provider, {}, DAY, DAY + timedelta(days=2), True)
        # The client is closed here, as HttpClients closes its clients after a sync,
        # and the loop runs on a moment (the store's writer, other connections' syncs).
        await asyncio.sleep(0.4)

    caplog.set_level("ERROR", logger="asyncio")
    asyncio.run(fetch())
    gc.collect()  # a task's unretrieved exception is logged when the task is collected
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
    assert not [e for e in provider.errors if "closed" in str(e)]
