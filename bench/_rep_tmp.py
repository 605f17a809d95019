"""Temporary: profile build_report for 1 day. Never commit."""
import cProfile, pstats, sys
from datetime import UTC, datetime
from bench.report_bench import _load_store, periods
from bench.stores import STORES
from bot.reports import build_report
from storage.crypto import Keyring
from storage.db import Database
keyring = Keyring([Keyring.generate_key()])
for backend, open_store in STORES:
    if backend != sys.argv[1]: continue
    with open_store() as url:
        db = Database(url, keyring); db.migrate()
        today = datetime.now(UTC).date()
        ws = _load_store(db, today)
        period = periods(today)[0]
        for _ in range(20):
            with db.session() as s: build_report(s, ws, period, "model")
        pr = cProfile.Profile(); pr.enable()
        for _ in range(200):
            with db.session() as s: build_report(s, ws, period, "model")
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(35)
        db.dispose()
