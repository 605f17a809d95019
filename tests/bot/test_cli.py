"""``xai-usage`` as a user runs it: real processes, the stand-in over sockets."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, Sandbox
from storage.models import Budget, Connection, Delivery


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


def xai_usage(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


def connect(env, label="Production — xAI", days="7", key=DEMO_KEY):
    return xai_usage(
        env,
        "connect",
        "--team-id",
        DEMO_TEAM_ID,
        "--label",
        label,
        "--days",
        days,
        stdin=key + "\n",
    )


def test_connect_reads_the_key_from_stdin_and_never_prints_it(cli_env) -> None:
    done = connect(cli_env)
    assert done.returncode == 0, done.stderr
    assert "Connected “Production — xAI” (xai-…beef)" in done.stdout
    assert "Backfilled “Production — xAI”: 7 days" in done.stdout
    assert DEMO_KEY not in done.stdout + done.stderr


def test_month_as_json_is_stable_for_scripts(cli_env) -> None:
    assert connect(cli_env).returncode == 0
    done = xai_usage(cli_env, "month", "--by", "model", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) >= {"start", "end", "group_by", "total_usd", "rows", "as_of"}
    assert report["group_by"] == "model" and report["end"] >= report["start"]
    total = Decimal(report["total_usd"])
    assert total > 0
    assert sum(Decimal(r["cost_usd"]) for r in report["rows"]) == total
    costs = [Decimal(r["cost_usd"]) for r in report["rows"]]
    assert costs == sorted(costs, reverse=True)


def test_csv_and_table_agree_with_json(cli_env) -> None:
    assert connect(cli_env).returncode == 0
    as_json = json.loads(xai_usage(cli_env, "week", "--by", "day", "--format", "json").stdout)
    rows = list(
        csv.DictReader(
            io.StringIO(xai_usage(cli_env, "week", "--by", "day", "--format", "csv").stdout)
        )
    )
    assert [r["day"] for r in rows] == [r["key"] for r in as_json["rows"]]
    assert len(rows) == 7  # every day, zero days included, in order
    table = xai_usage(cli_env, "week", "--by", "day").stdout
    assert "Last 7 days" in table and "Today is partial" in table


def test_a_typo_is_a_clear_line_and_a_usage_exit(cli_env) -> None:
    done = xai_usage(cli_env, "tody", "--by", "model")
    assert done.returncode == 2
    assert "Did you mean `today`?" in done.stderr and "Traceback" not in done.stderr


def test_a_wrong_key_fails_with_the_fix_and_saves_nothing(cli_env) -> None:
    done = connect(cli_env, key="xai-this-key-was-revoked-long-ago-0000")
    assert done.returncode == 1
    assert "Management API key" in done.stderr and "Traceback" not in done.stderr
    assert "No connections yet" in xai_usage(cli_env, "status").stdout


def test_an_outage_is_reported_and_the_data_is_kept(cli_env, live_sandbox) -> None:
    assert connect(cli_env).returncode == 0
    before = xai_usage(cli_env, "week", "--format", "json").stdout
    live_sandbox.add_fault("usage", status=503, times=0)
    done = xai_usage(cli_env, "sync")
    assert done.returncode == 1
    assert "failed" in done.stderr and "Traceback" not in done.stderr
    after = json.loads(xai_usage(cli_env, "week", "--format", "json").stdout)
    assert after["total_usd"] == json.loads(before)["total_usd"]
    status = xai_usage(cli_env, "status").stdout
    assert "failing" in status


def test_disconnect_needs_confirmation_without_a_terminal(cli_env) -> None:
    assert connect(cli_env).returncode == 0
    refused = xai_usage(cli_env, "disconnect", "Production — xAI")
    assert refused.returncode == 1 and "--yes" in refused.stderr
    done = xai_usage(cli_env, "disconnect", "production — xai", "--yes")
    assert done.returncode == 0, done.stderr
    assert "No connections yet" in xai_usage(cli_env, "status").stdout


def test_a_wrong_encryption_key_is_refused_with_the_fix(cli_env) -> None:
    assert connect(cli_env).returncode == 0
    wrong = {**cli_env, "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode()}
    done = xai_usage(wrong, "status")
    assert done.returncode == 1
    assert "XAI_USAGE_ENCRYPTION_KEY" in done.stderr and "Traceback" not in done.stderr


def test_help_lists_every_command(cli_env) -> None:
    done = xai_usage(cli_env, "help")
    for command in ("today", "range", "connect", "sync", "sandbox", "demo", "rotate-key"):
        assert f"  {command}" in done.stdout
    assert "Usage: xai-usage range FROM TO" in xai_usage(cli_env, "help", "range").stdout


def test_the_management_key_is_nowhere_after_connect_and_sync(cli_env, db_url, tmp_path) -> None:
    """Database file, logs at DEBUG and every output: no trace of the key."""
    outputs = [
        connect(cli_env, days="40"),
        xai_usage(cli_env, "sync"),
        xai_usage(cli_env, "status", "--format", "json"),
        xai_usage(cli_env, "month", "--by", "key"),
        xai_usage(cli_env, "sync", "--connection", "nope"),
    ]
    assert outputs[0].returncode == 0, outputs[0].stderr
    printed = "".join(o.stdout + o.stderr for o in outputs)
    assert "DEBUG" in printed  # the logs really were captured
    needles = [DEMO_KEY, DEMO_KEY[4:-4], base64.b64encode(DEMO_KEY.encode()).decode()]
    if "postgresql" in db_url:
        from sqlalchemy import create_engine, text

        engine = create_engine(db_url)
        with engine.connect() as conn:
            stored = "\n".join(
                str(row)
                for table in ("connections", "sync_runs", "daily_costs", "workspaces")
                for row in conn.execute(text(f"SELECT * FROM {table}"))
            )
        engine.dispose()
    else:
        stored = b"".join(p.read_bytes() for p in (tmp_path / "data").glob("xai-usage.db*")).decode(
            "utf-8", errors="replace"
        )
    assert "xai-…beef" in stored  # the mask is there, so the search looked at the right data
    for needle in needles:
        assert needle not in printed
        assert needle not in stored


# -- edge values: bounded work, one clear line (issue 9) --------------------------
# In-process: main() with its own console, against the real store of `db`.


@pytest.fixture
def edge_env(tmp_path: Path, db, store_key: bytes) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    env.update(
        XAI_USAGE_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=db.url,
        XAI_USAGE_ENCRYPTION_KEY=base64.b64encode(store_key).decode(),
        XAI_MANAGEMENT_API_URL="http://127.0.0.1:9",  # nothing here may reach xAI
        XAI_USAGE_NO_PLUGINS="1",
    )
    return env


def run_in_process(env: dict[str, str], *words: str, stdin: str = "") -> tuple[int, str, str]:
    from bot.cli import Console, main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(words), console=Console(out, err, io.StringIO(stdin)), environ=env)
    return code, out.getvalue(), err.getvalue()


def one_error_line(err: str) -> str:
    """The message line (a usage error may add its usage line); never a traceback."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and 1 <= len(lines) <= 2, err
    assert len(lines) == 1 or lines[1].startswith("Usage: "), err
    assert lines[0].startswith("xai-usage: "), err
    return lines[0]


def test_a_range_from_year_1_to_9999_covers_only_days_that_can_have_costs(edge_env) -> None:
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    began = time.perf_counter()
    code, out, err = run_in_process(
        edge_env, "range", "0001-01-01", "9999-12-30", "--by", "day", "--format", "json"
    )
    assert time.perf_counter() - began < 10  # was 43 s and 2 GB
    assert code == 0, err
    report = json.loads(out)
    assert (report["start"], report["end"]) == ("2023-01-01", tomorrow.isoformat())
    assert len(report["rows"]) == (tomorrow - date(2023, 1, 1)).days + 1  # zero days included
    assert report["total_usd"] == "0"


@pytest.mark.parametrize(
    ("start", "end", "covered"),
    [
        ("2022-12-31", "2023-01-02", ("2023-01-01", "2023-01-02")),
        ("2026-11-30", "2030-01-01", ("2026-11-30", None)),
    ],
)
def test_a_range_reaching_past_the_data_is_cut_to_it(edge_env, start, end, covered) -> None:
    tomorrow = (datetime.now(UTC).date() + timedelta(days=1)).isoformat()
    code, out, err = run_in_process(edge_env, "range", start, end, "--format", "json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["start"], report["end"]) == (covered[0], covered[1] or tomorrow)


@pytest.mark.parametrize(
    ("start", "end"), [("9999-12-31", "9999-12-31"), ("0001-01-01", "2022-12-31")]
)
def test_a_range_with_no_day_that_can_have_costs_is_one_line(edge_env, start, end) -> None:
    code, out, err = run_in_process(edge_env, "range", start, end, "--by", "day")
    assert code == 1 and out == ""
    line = one_error_line(err)
    assert f"No costs can fall between {start} and {end}: reports cover 2023-01-01 to " in line
    assert "(tomorrow, UTC)" in line


@pytest.mark.parametrize(
    "when", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2022-12-31T23:59:59Z"]
)
def test_jobs_run_at_an_impossible_time_is_one_line(edge_env, when) -> None:
    code, out, err = run_in_process(edge_env, "jobs", "run", "--at", when)
    assert code == 1 and out == ""
    assert "--at must be from 2023-01-01T00:00:00Z to " in one_error_line(err)


def test_jobs_with_an_unknown_subcommand_runs_nothing(edge_env, db) -> None:
    code, out, err = run_in_process(edge_env, "jobs", "list")
    assert code == 2 and out == ""
    assert err.strip().endswith("Usage: jobs run [--at TIME]")
    with db.session() as session:  # the daily sync did not claim its slot
        assert session.scalar(select(func.count()).select_from(Delivery)) == 0


def test_sync_days_takes_ascii_digits_only(edge_env) -> None:
    code, out, err = run_in_process(edge_env, "sync", "--days", "²")
    assert code == 2 and out == ""
    assert "--days must be a whole number from 1 to 90; got “²”" in one_error_line(err)


@pytest.mark.parametrize(
    "amount",
    [
        "1e400",
        "NaN",
        "nan",
        "inf",
        "-Infinity",
        "-5",
        "0",
        "0.00",
        "1.234",
        "10000000.01",
        "1e3",
        "½",
    ],
)
def test_a_budget_outside_cents_up_to_ten_million_is_refused_and_nothing_saved(
    edge_env, db, amount
) -> None:
    code, out, err = run_in_process(edge_env, "budget", "set", amount)
    assert code == 1 and out == ""
    line = one_error_line(err)
    assert "more than $0 and at most $10,000,000, with at most 2 decimals" in line
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Budget)) == 0


@pytest.mark.parametrize(
    ("typed", "stored"), [("10000000", "10000000.00"), ("$1,250.5", "1250.50")]
)
def test_a_budget_within_bounds_is_saved_exactly(edge_env, db, typed, stored) -> None:
    code, out, err = run_in_process(edge_env, "budget", "set", typed)
    assert code == 0, err
    assert "a month" in out
    with db.session() as session:
        assert session.scalar(select(Budget.amount_usd)) == Decimal(stored)


def test_a_10_kb_label_is_refused_before_the_key_is_read(edge_env, db) -> None:
    code, out, err = run_in_process(
        edge_env, "connect", "--team-id", DEMO_TEAM_ID, "--label", "L" * 10_240, stdin=DEMO_KEY
    )
    assert code == 2 and out == ""
    assert "at most 80 characters" in one_error_line(err)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Connection)) == 0


@pytest.mark.parametrize(
    "words",
    [
        ("today", "--connection", "Prod\x00"),
        ("range", "2026-11-01", "2026-11-02\x00"),
        ("budget", "set", "100\x00"),
        ("disconnect", "a\x00b", "--yes"),
        ("connect", "--team-id", f"{DEMO_TEAM_ID}\x00"),
        ("today --model grok\x00",),
    ],
)
def test_a_nul_byte_in_any_field_is_one_line(edge_env, db, words) -> None:
    code, out, err = run_in_process(edge_env, *words)
    assert code == 2 and out == ""
    assert "contains a control character" in one_error_line(err)
