"""``xai-usage`` as a user runs it, the stand-in over sockets.

Commands run in this process as a fresh process would run them
(:func:`tests.conftest.xai_usage_in_process`); real processes only where the
process itself is the point: ``serve``, a user without root's powers, and what
a cold start imports.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import socket
import stat
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID
from storage.models import Budget, Connection, Delivery
from tests.conftest import xai_usage_in_process as xai_usage


def xai_usage_process(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess:
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
    assert "Alerts have nowhere to go yet" in done.stdout  # and what to do about it
    assert (
        "`xai-usage alerts C0123ABCD` or `xai-usage alerts --email ADDRESS` gives them a place."
    ) in done.stdout
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


def test_help_about_an_unknown_command_suggests_the_nearest(cli_env) -> None:
    done = xai_usage(cli_env, "help", "stauts")
    assert "“stauts” is not a command. Did you mean `status`?" in done.stdout
    assert "  status" in done.stdout  # the list follows


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


# -- one team, one connection (in-process: main() with its streams swapped) -----------

NEW_KEY = "xai-mgmt-second-key-9a8b7c6d5e4f3a2b1c0dcafe"


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, str, str]:
    from bot.cli import Console, main

    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), console=Console(out, err, io.StringIO(stdin)), environ=env)
    return code, out.getvalue(), err.getvalue()


def month_total(env: dict[str, str]) -> Decimal:
    code, out, err = run_cli(env, "range", "2000-01-01", "2100-01-01", "--format", "json")
    assert code == 0, err
    return Decimal(json.loads(out)["total_usd"])


def test_connecting_the_same_team_again_is_refused_and_totals_stay(cli_env) -> None:
    assert (
        run_cli(cli_env, "connect", "--team-id", DEMO_TEAM_ID, "--days", "7", stdin=DEMO_KEY)[0]
        == 0
    )
    total = month_total(cli_env)
    code, out, err = run_cli(
        cli_env, "connect", "--team-id", DEMO_TEAM_ID, "--label", "", "--days", "7", stdin=DEMO_KEY
    )
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err  # one actionable line
    assert "already connected here as “Production — xAI”" in err
    assert 'xai-usage update-key "Production — xAI"' in err
    assert month_total(cli_env) == total
    status = run_cli(cli_env, "status", "--format", "json")[1]
    assert [c["label"] for c in json.loads(status)] == ["Production — xAI"]


def test_a_revoked_key_is_replaced_with_update_key_and_the_data_is_kept(
    cli_env, live_sandbox
) -> None:
    code, _, err = run_cli(
        cli_env, "connect", "--team-id", DEMO_TEAM_ID, "--days", "30", stdin=DEMO_KEY
    )
    assert code == 0, err
    total = month_total(cli_env)
    live_sandbox.revoke_key(DEMO_KEY)
    assert run_cli(cli_env, "sync")[0] == 1
    status = run_cli(cli_env, "status")[1]
    assert "status error" in status
    assert (
        'To give it a new key (its data is kept): xai-usage update-key "Production — xAI"' in status
    )

    live_sandbox.add_key(NEW_KEY, DEMO_TEAM_ID)
    code, out, err = run_cli(cli_env, "update-key", "production — xai", stdin=NEW_KEY + "\n")
    assert code == 0, err
    assert "New key for “Production — xAI” (xai-…cafe)" in out
    assert "Synced “Production — xAI”: " in out  # the sync ran at once
    status = json.loads(run_cli(cli_env, "status", "--format", "json")[1])
    assert [(c["status"], c["key"]) for c in status] == [("ok", "xai-…cafe")]
    assert month_total(cli_env) >= total  # nothing lost (today may have grown)
    assert NEW_KEY not in out + err


def test_update_key_reads_the_environment_and_its_alias(cli_env, live_sandbox) -> None:
    env = {**cli_env, "XAI_MANAGEMENT_API_KEY": DEMO_KEY}  # the alias works for connect too
    assert run_cli(env, "connect", "--team-id", DEMO_TEAM_ID, "--days", "2")[0] == 0
    live_sandbox.add_key(NEW_KEY, DEMO_TEAM_ID)
    for variable in ("XAI_MANAGEMENT_KEY", "XAI_MANAGEMENT_API_KEY"):
        env = {**cli_env, variable: NEW_KEY}
        code, out, err = run_cli(env, "update-key", "Production — xAI")
        assert code == 0, err
        assert "(xai-…cafe)" in out


def test_update_key_refuses_another_teams_key_and_unknown_labels(cli_env, live_sandbox) -> None:
    assert (
        run_cli(cli_env, "connect", "--team-id", DEMO_TEAM_ID, "--days", "2", stdin=DEMO_KEY)[0]
        == 0
    )
    live_sandbox.add_key(NEW_KEY, "11111111-2222-3333-4444-555555555555")
    code, out, err = run_cli(cli_env, "update-key", "Production — xAI", stdin=NEW_KEY)
    assert code == 1 and err.count("xai-usage:") == 1 and "Traceback" not in err and out == ""
    assert f"reads {DEMO_TEAM_ID}, which a new key cannot change" in err
    status = json.loads(run_cli(cli_env, "status", "--format", "json")[1])
    assert status[0]["key"] == "xai-…beef"  # the old key stays
    code, _, err = run_cli(cli_env, "update-key", "Staging", stdin=NEW_KEY)
    assert code == 1 and "“Production — xAI”" in err
    code, _, err = run_cli(cli_env, "update-key", stdin=NEW_KEY)
    assert code == 2 and "needs LABEL" in err


def test_days_before_the_backfill_say_not_fetched_in_every_format(cli_env) -> None:
    from datetime import UTC, datetime, timedelta

    assert connect(cli_env).returncode == 0  # 7 days, today included
    today = datetime.now(UTC).date()
    start, first = today - timedelta(days=9), today - timedelta(days=6)
    span = (start.isoformat(), today.isoformat())
    as_json = json.loads(
        xai_usage(cli_env, "range", *span, "--by", "day", "--format", "json").stdout
    )
    assert as_json["uncovered"] == [
        {
            "connection": "Production — xAI",
            "from": start.isoformat(),
            "to": (first - timedelta(days=1)).isoformat(),
        }
    ]
    assert [r["cost_usd"] is None for r in as_json["rows"]] == [True] * 3 + [False] * 7
    rows = list(
        csv.DictReader(
            io.StringIO(xai_usage(cli_env, "range", *span, "--by", "day", "--format", "csv").stdout)
        )
    )
    assert [r["cost_usd"] == "" for r in rows] == [True] * 3 + [False] * 7
    table = xai_usage(cli_env, "range", *span, "--by", "day").stdout
    assert table.lower().count("not fetched") == 3 + 1  # three rows and the note
    assert '--connection "Production — xAI" --days 10`' in table
    old = xai_usage(cli_env, "range", "2025-01-01", "2025-12-31")
    assert old.returncode == 0 and "Nothing was fetched for this period" in old.stdout
    assert "No spend" not in old.stdout


def test_status_sets_month_to_date_beside_the_invoice_so_far(cli_env) -> None:
    assert connect(cli_env, days="90").returncode == 0
    done = xai_usage(cli_env, "status", "--format", "json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)
    reconciliation = row["reconciliation"]
    assert Decimal(reconciliation["usage_usd"]) == Decimal(row["month_to_date_usd"]) > 0
    assert reconciliation["flagged"] is False  # the whole month was fetched
    assert abs(Decimal(reconciliation["difference_usd"])) < 1
    assert "invoice so far" in xai_usage(cli_env, "status").stdout


# -- outages: one line naming DATABASE_URL, never a traceback


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def outage_urls() -> list[tuple[str, str]]:
    from tests.conftest import POSTGRES_ADMIN_URL

    server = POSTGRES_ADMIN_URL.rsplit("/", 1)[0].replace("postgres@", "postgres:pw-s3cret@")
    return [
        (f"{server}/xai_usage_no_such_db", "does not exist"),
        ("postgresql://me:pw-s3cret@127.0.0.1:FREE_PORT/costs", "refused"),
        ("postgresql://me:pw-s3cret@no-such-host.invalid/costs", "no-such-host.invalid"),
        ("mysql://me:pw-s3cret@127.0.0.1/costs", "uses mysql://"),
        ("this is not a url", "not a database URL"),
        ("sqlite:////proc/xai-usage.db", "cannot be opened"),
    ]


@pytest.fixture
def bare_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    env.update(
        XAI_USAGE_DATA_DIR=str(tmp_path / "data"),
        XAI_USAGE_NO_PLUGINS="1",
        XAI_USAGE_ENCRYPTION_KEY=base64.b64encode(os.urandom(32)).decode(),
    )
    return env


@pytest.mark.parametrize(("url", "says"), outage_urls())
@pytest.mark.parametrize("command", [["today", "--by", "model"], ["serve", "--http"]])
def test_a_database_that_cannot_be_used_is_one_line(bare_env, url, says, command) -> None:
    env = {
        **bare_env,
        # a port found free now, not at collection: every test worker collects the same ids
        "DATABASE_URL": url.replace("FREE_PORT", str(free_port())),
        "SLACK_BOT_TOKEN": "xoxb-0000-test",
        "SLACK_SIGNING_SECRET": "0123456789abcdef0123456789abcdef",
    }
    run = xai_usage_process if command[0] == "serve" else xai_usage
    done = run(env, *command)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("xai-usage: ") and "DATABASE_URL" in line and says in line
    assert "pw-s3cret" not in done.stderr + done.stdout


def run_without_root_powers(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """As a user who may not write the files: root keeps its uid but loses the capability
    to override file permissions, so chmod means what it says."""
    if os.geteuid() != 0:
        return xai_usage_process(env, *args)
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]
    return subprocess.run(
        [*prefix, sys.executable, "-m", "bot.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )


@pytest.mark.parametrize("folder_writable", [True, False])
def test_reports_work_from_a_read_only_sqlite_store(cli_env, db, tmp_path, folder_writable):
    if db.backend != "sqlite":
        pytest.skip("a file's permissions are a SQLite matter")
    assert connect(cli_env).returncode == 0
    before = xai_usage(cli_env, "week", "--by", "model", "--format", "json")
    assert before.returncode == 0, before.stderr
    data = tmp_path / "data"
    store = data / "xai-usage.db"
    assert not store.with_name("xai-usage.db-wal").exists()  # closed cleanly
    store.chmod(0o444)
    if not folder_writable:
        data.chmod(0o555)
    try:
        report = run_without_root_powers(cli_env, "week", "--by", "model", "--format", "json")
        assert report.returncode == 0, report.stderr
        assert json.loads(report.stdout)["total_usd"] == json.loads(before.stdout)["total_usd"]
        status = run_without_root_powers(cli_env, "status")
        assert status.returncode == 0 and "Production — xAI" in status.stdout
        refused = run_without_root_powers(cli_env, "sync")
        assert refused.returncode == 1
        assert "Traceback" not in refused.stderr, refused.stderr
        [line] = [x for x in refused.stderr.splitlines() if x.startswith("xai-usage:")]
        assert "read-only" in line and str(store) in line and "DATABASE_URL" in line
    finally:
        data.chmod(0o700)
        store.chmod(0o600)


def test_credentials_that_cannot_be_decrypted_are_one_line_not_a_traceback(cli_env, db) -> None:
    from sqlalchemy import update

    from storage.crypto import Keyring
    from storage.db import Database
    from storage.models import Connection

    assert connect(cli_env).returncode == 0
    key = (Path(cli_env["XAI_USAGE_DATA_DIR"]) / "encryption.key").read_text()
    keyring = Keyring.from_env_value(key)
    data = Path(cli_env["XAI_USAGE_DATA_DIR"])
    store = Database(cli_env.get("DATABASE_URL") or f"sqlite:///{data / 'xai-usage.db'}", keyring)
    try:
        with store.transaction() as session:  # a token sealed for another row: it will not open
            session.execute(
                update(Connection).values(
                    credentials_sealed=keyring.seal(b"{}", "connections/another/credentials")
                )
            )
    finally:
        store.dispose()
    done = xai_usage(cli_env, "sync")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.count("could not be decrypted") == 1, done.stderr


# -- start-up: a terminal command imports what it needs, when it needs it

NOT_AT_START = (
    "alembic",
    "slack_sdk",
    "slack_bolt",
    "jinja2",
    "httpx",
    "pluggy",
    "apscheduler",
    "sqlalchemy",
    "cryptography",
)


def loaded(env: dict[str, str], code: str) -> list[str]:
    """Which of NOT_AT_START a fresh interpreter has imported after running ``code``."""
    probe = (
        f"import sys\n{code}\nprint('loaded:', *(m for m in {NOT_AT_START!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=Path(__file__).parents[2],
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1].split()[1:]


def test_importing_the_cli_loads_no_heavy_stack(bare_env) -> None:
    assert loaded(bare_env, "import bot.cli") == []


def test_a_report_on_a_current_store_needs_neither_alembic_nor_slack_nor_http(cli_env, db) -> None:
    assert connect(cli_env).returncode == 0
    report = "from bot.cli import main\nassert main(['today', '--by', 'model']) == 0"
    # The table is a template. On SQLite the store is read with sqlite3 alone: importing
    # SQLAlchemy costs more than the report (tests/bot/test_reports_without_sqlalchemy.py).
    expected = ["jinja2"] if db.backend == "sqlite" else ["jinja2", "sqlalchemy", "cryptography"]
    assert loaded(cli_env, report) == expected


def test_a_store_other_users_can_read_is_flagged_with_the_fix(cli_env, db, tmp_path) -> None:
    if db.backend != "sqlite":
        pytest.skip("a file's permissions are a SQLite matter")
    assert connect(cli_env).returncode == 0
    store = tmp_path / "data" / "xai-usage.db"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600  # created private
    assert "chmod" not in xai_usage(cli_env, "status").stderr
    store.chmod(0o644)  # as a store made before this release was
    done = xai_usage(cli_env, "status")
    assert done.returncode == 0
    assert f"warning: {store} has permissions 0644" in done.stderr
    assert f"chmod 600 {store}*" in done.stderr


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
    assert report["total_usd"] is None  # nothing is connected: nothing was fetched


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
    assert "--days must be a whole number from 1 to 3660; got “²”" in one_error_line(err)


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


def test_a_reader_that_stops_early_gets_no_traceback(cli_env) -> None:
    """`xai-usage month --by day --format json | head -1`: the pipe closes mid-answer."""
    assert connect(cli_env, days="30").returncode == 0
    reader = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bot.cli",
            "range",
            "2023-01-01",
            "2026-12-31",
            "--by",
            "day",
            "--format",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env,
        cwd=Path(__file__).parents[2],
    )
    assert reader.stdout.read(10) == b'{\n  "start'  # then stop reading, as head does
    reader.stdout.close()
    assert reader.wait(timeout=60) == 0
    assert b"Traceback" not in reader.stderr.read()


@pytest.mark.parametrize("words", [("month",), ("today", "--by", "day"), ("week", "--by", "key")])
def test_with_nothing_connected_a_report_says_how_to_connect(cli_env, words) -> None:
    done = xai_usage(cli_env, *words)
    assert done.returncode == 0
    assert "`xai-usage connect`" in done.stdout
    for noise in ("$0.00", "0 connections", "as of never", "Today is partial"):
        assert noise not in done.stdout, noise


def test_with_nothing_connected_there_is_nothing_to_draw_or_to_put_in_a_pdf(
    cli_env, tmp_path
) -> None:
    chart = tmp_path / "month.png"
    done = xai_usage(cli_env, "month", "--format", "png", "-o", str(chart))
    assert done.returncode == 1 and not chart.exists()
    assert "Nothing is connected yet" in done.stderr and "xai-usage connect" in done.stderr
    pdf = tmp_path / "month.pdf"
    assert xai_usage(cli_env, "export", "month", "--format", "pdf", "-o", str(pdf)).returncode == 0
    from tests.bot.test_exports import pdf_text

    text = pdf_text(pdf.read_bytes())
    assert "Nothing is connected yet" in text and "connect" in text
    for noise in ("$0.00", "as of never", "not fetched"):
        assert noise not in text, noise
