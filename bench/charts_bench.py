"""Charts benchmark: drawing and exporting, and what not drawing costs nobody.

A SQLite store holds one workspace with one connection x 90 days (ending
today, UTC) x 6 models, two API keys each. Timed after a warm-up (the first
drawing pays matplotlib's import and font cache), each in a fresh session:

* PNG: ``chart_data`` for a 90-day ``range --by model`` plus ``render_chart``
  to PNG, 30 times; target p95 under 150 ms. The drawing alone is timed too.
* PDF: ``export_file`` for the last 30 days as a PDF (report, detail rows,
  forecast, three tables, the chart, two pages), 10 times; target p95 under
  500 ms.
* Start-up: ``xai-usage today`` in a fresh process, 5 times (median), with a
  check that it never imported matplotlib; and, for scale, what importing
  matplotlib's Agg backend alone costs a fresh process.

Wall-clock p95 is what the targets judge; CPU time is printed beside it,
since on a shared machine the wall clock also counts waiting for a core.

Each chart's series are checked to add up to the report's total, and the PNG's
header to have the size Slack previews, so neither can be fast by being wrong.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from bench.stores import bulk_insert_costs, sqlite_store
from bench.table import Column, Scoreboard, Table, ms, percentile
from bot.grammar import Command
from bot.reports import Period, build_report
from bot.sync import record_fetched
from providers.xai.provider import model_id
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, MODELS
from storage.crypto import Keyring
from storage.db import Database
from storage.models import NANO, Workspace
from storage.repo import rebuild_totals
from tests.fakes.connections import add_sealed_connection

DAYS = 90
PNG_RUNS, PDF_RUNS, STARTS = 30, 10, 5
PNG_TARGET, PDF_TARGET = 0.150, 0.500
ROOT = Path(__file__).parents[1]


def run(score: Scoreboard) -> None:
    from bot.charts import PIXELS, chart_data, png_size, render_chart
    from bot.exports import export_file

    table = Table(
        "Charts: 90 days x 6 models (SQLite), a 30-day PDF, `today` start-up",
        [Column("what", 34, "<"), Column("p50", 10), Column("p95", 10), Column("p95 CPU", 10),
         Column("target", 10), Column("", 4, "<")],
    )  # fmt: skip
    keyring = Keyring([Keyring.generate_key()])
    now = datetime.now(UTC)
    today = now.date()
    with sqlite_store() as url:
        db = Database(url, keyring)
        db.migrate()
        workspace_id = _load(db, keyring, now)
        period = Period("range", today - timedelta(days=DAYS - 1), today, "90 days")

        def draw() -> tuple[bytes, object]:
            with db.session() as session:
                report = build_report(session, workspace_id, period, "model", now=now)
                data = chart_data(session, workspace_id, report)
            return render_chart(data, "png"), (report, data)

        png, (report, data) = draw()  # warm-up: imports, fonts
        if sum((s.total for s in data.series), Decimal(0)) != report.total_usd:
            score.fail("the chart's series do not add up to the report's total")
        if png_size(png) != PIXELS or len(data.buckets) != DAYS or len(data.series) != 6:
            score.fail(f"unexpected chart: {png_size(png)}, {len(data.buckets)} days")
        whole, alone, whole_cpu, alone_cpu = [], [], [], []
        for _ in range(PNG_RUNS):
            began, cpu = time.perf_counter(), time.process_time()
            draw()
            whole.append(time.perf_counter() - began)
            whole_cpu.append(time.process_time() - cpu)
            began, cpu = time.perf_counter(), time.process_time()
            render_chart(data, "png")
            alone.append(time.perf_counter() - began)
            alone_cpu.append(time.process_time() - cpu)
        p95 = percentile(whole, 95)
        table.row(
            "PNG, store to bytes", ms(statistics.median(whole)), ms(p95),
            ms(percentile(whole_cpu, 95)), ms(PNG_TARGET),
            score.target("90-day x 6-model PNG p95 < 150 ms", p95 < PNG_TARGET),
        )  # fmt: skip
        table.row(
            "  of which drawing", ms(statistics.median(alone)), ms(percentile(alone, 95)),
            ms(percentile(alone_cpu, 95)), "", "",
        )  # fmt: skip
        command = Command("export", (str(today - timedelta(29)), str(today)), {"format": "pdf"})
        pdfs, pdf_cpu = [], []
        for i in range(PDF_RUNS + 1):
            began, cpu = time.perf_counter(), time.process_time()
            with db.session() as session:
                made = export_file(session, workspace_id, "bench", command, now)
            if i:  # the first is a warm-up
                pdfs.append(time.perf_counter() - began)
                pdf_cpu.append(time.process_time() - cpu)
        if not made.data.startswith(b"%PDF"):
            score.fail("the export is not a PDF")
        p95 = percentile(pdfs, 95)
        table.row(
            f"30-day PDF ({len(made.data) // 1024} KiB)", ms(statistics.median(pdfs)), ms(p95),
            ms(percentile(pdf_cpu, 95)), ms(PDF_TARGET),
            score.target("30-day PDF p95 < 500 ms", p95 < PDF_TARGET),
        )  # fmt: skip
        db.dispose()
    _startup(score, table)


def _load(db: Database, keyring: Keyring, now: datetime) -> int:
    rng = random.Random(10)
    with db.transaction() as session:
        workspace = Workspace(name="bench")
        session.add(workspace)
        session.flush()
        connection = add_sealed_connection(
            session,
            keyring,
            workspace.id,
            {"team_id": DEMO_TEAM_ID, "management_key": DEMO_KEY},
            label="Production — xAI",
            secret_mask="xai-…beef",
            backfill_days=DAYS,
            key_breakdown=True,
            now=now,
        )
        session.flush()
        workspace_id, connection_id = workspace.id, connection.id
    today = now.date()
    rows = [
        (connection_id, workspace_id, today - timedelta(days=d), model_id(label), key,
         int(Decimal(rng.uniform(0.5, 12)) / NANO))
        for d in range(DAYS) for label in MODELS for key in ("key-a", "key-b")
    ]  # fmt: skip
    bulk_insert_costs(db, rows)
    with db.transaction() as session:
        rebuild_totals(session, workspace_id)
        # every day fetched, as a backfill leaves it: else the chart shows 90 gaps
        record_fetched(session, connection_id, workspace_id, today - timedelta(DAYS - 1), today)
    return workspace_id


def _startup(score: Scoreboard, table: Table) -> None:
    """``xai-usage today`` in fresh processes: its time, and that matplotlib stayed out."""
    import tempfile

    probe = (
        "import sys, io, time; began = time.perf_counter(); "
        "from bot.cli import main, Console; "
        "main(['today'], console=Console(io.StringIO(), io.StringIO())); "
        "print(time.perf_counter() - began, 'matplotlib' in sys.modules)"
    )
    with tempfile.TemporaryDirectory() as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
        env.update(XAI_USAGE_DATA_DIR=data_dir, XAI_USAGE_NO_PLUGINS="1")
        times, loaded = [], False
        for _ in range(STARTS + 1):
            done = subprocess.run(
                [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT
            )
            seconds, imported = done.stdout.split()
            times.append(float(seconds))
            loaded = loaded or imported == "True"
        agg = []
        for _ in range(STARTS):
            done = subprocess.run(
                [sys.executable, "-c", "import time; t = time.perf_counter(); "
                 "import matplotlib.backends.backend_agg; print(time.perf_counter() - t)"],
                capture_output=True, text=True, env=env, cwd=ROOT,
            )  # fmt: skip
            agg.append(float(done.stdout))
    if loaded:
        score.fail("`xai-usage today` imported matplotlib")
    table.row("`today` in a fresh process", ms(statistics.median(times[1:])), "", "", "", "")
    table.note(f"matplotlib imported by `today`: {'yes' if loaded else 'no'}")
    table.note(
        f"importing matplotlib's Agg backend alone: {ms(statistics.median(agg))} (median), "
        "paid only by commands that draw"
    )
