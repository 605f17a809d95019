"""A provider package outside the tree works on every surface, with no host file changed.

``tests/plugin_package/acme_costs`` is laid out in a temporary directory as pip
would install it (the package and its ``.dist-info`` with the
``xai_usage.providers`` entry point) and that directory is put on the path: the
app finds it the way it finds any third party's plugin. Nothing in ``bot/``,
``storage/`` or ``templates/`` names it (``tests/bot/test_seam.py`` would say).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
PACKAGE = ROOT / "tests" / "plugin_package" / "acme_costs"


def install(into: Path) -> Path:
    """``acme_costs`` and its metadata in ``into``, as an installer leaves them."""
    shutil.copytree(PACKAGE, into / "acme_costs", ignore=shutil.ignore_patterns("__pycache__"))
    info = into / "acme_costs-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-costs\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[xai_usage.providers]\nacme = acme_costs.plugin\n")
    return into


@pytest.fixture
def site(tmp_path, monkeypatch) -> Path:
    """The plugin installed in a directory on ``sys.path`` (removed again after the test)."""
    where = install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(where))
    yield where
    for name in [m for m in sys.modules if m == "acme_costs" or m.startswith("acme_costs.")]:
        del sys.modules[name]


@pytest.fixture
def acme(site):
    from acme_costs.sandbox import AcmeStandIn

    with AcmeStandIn() as stand_in:
        yield stand_in


@pytest.fixture
def env(acme) -> dict[str, str]:
    from acme_costs.sandbox import DEMO_TOKEN

    return {"XAI_USAGE_NO_PLUGINS": "0", "ACME_API_URL": acme.url, "ACME_API_TOKEN": DEMO_TOKEN}


def expected_month(account: str, today: date) -> dict[str, Decimal]:
    from acme_costs.sandbox import MODELS, cost

    days = [today.replace(day=1) + timedelta(days=i) for i in range(today.day)]
    return {model: sum(cost(account, model, d) for d in days) for model in MODELS}


def test_a_fresh_process_finds_the_installed_plugin_through_its_entry_point(tmp_path) -> None:
    where = install(tmp_path / "site")
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    environ |= {"PYTHONPATH": str(where), "XAI_USAGE_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "providers"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("acme ")]
    assert "Acme AI" in line and "--region (Region, optional)" in line
    assert "API token from standard input, the prompt, ACME_API_TOKEN" in line
    assert line.endswith("[acme_costs.provider]")


def test_the_terminal_connects_reports_syncs_and_rekeys_it(cli, env, acme) -> None:
    from acme_costs.sandbox import ACCOUNTS

    code, out, err = cli("connect", "--provider", "acme", "--region", "ap", env=env)
    assert code == 1 and "The region is us or eu" in err and acme.requests == []

    code, out, err = cli("connect", "--provider", "acme", "--region", "eu", env=env)

    assert code == 0, err
    account, name = ACCOUNTS["eu"]
    assert f"Connected “Acme” (acme-…0001), Acme AI account {name} ({account})" in out
    assert "Backfilled “Acme”: 30 days" in out  # its own reach, not the host's 90
    today = datetime.now(UTC).date()
    report = json.loads(cli("month", "--by", "model", "--format", "json", env=env)[1])
    assert {r["key"]: Decimal(r["cost_usd"]) for r in report["rows"]} == expected_month(
        account, today
    )
    assert report["caveats"] == ["Acme's costs leave out fine-tuning jobs, billed apart."]
    assert "Note: Acme's costs leave out fine-tuning jobs" in cli("month", env=env)[1]
    (row,) = json.loads(cli("status", "--format", "json", env=env)[1])
    assert (row["provider_name"], row["account"], row["account_name"]) == (
        "Acme AI",
        account,
        name,
    )
    assert "Synced 1 of 1" in cli("sync", "--days", "90", env=env)[1]
    code, out, _ = cli("insights", env=env)
    assert code == 0 and "by unit type" not in out  # no kinds to give: nothing said of them

    # Its own refusal code, which needs a person: the connection turns to error.
    acme.tokens.clear()
    assert cli("sync", env=env)[0] == 1
    (row,) = json.loads(cli("status", "--format", "json", env=env)[1])
    assert (row["status"], row["reason"]) == ("error", "token_expired")
    acme.tokens.add("acme-second-token-0002")
    code, out, err = cli(
        "update-key", "Acme", env={**env, "ACME_API_TOKEN": "acme-second-token-0002"}
    )
    assert code == 0, err
    assert "New key for “Acme” (acme-…0002)" in out


def test_slack_builds_its_form_from_its_fields_and_connects_it(tmp_path, db, store_key, env, acme):
    from acme_costs.sandbox import ACCOUNTS, DEMO_TOKEN

    from bot.digests import build_digest
    from bot.slack.connecting import connect_view
    from storage.repo import workspace_for_slack_team
    from tests.bot.slack.conftest import BOT_TOKEN, SIGNING_SECRET, TEAM, serving, text_of
    from tests.bot.slack.test_connect_providers import inputs, opened
    from tests.bot.slack.test_home import open_home, words
    from tests.bot.slack.test_slack_app import submit

    slack_env = {  # as tests/bot/slack/conftest.py's slack_env
        "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "XAI_USAGE_HTTP_DEADLINE": "5",
        "HOST": "127.0.0.1",
        "DATABASE_URL": db.url,
    }
    with serving(slack_env, store_key, **env) as app:
        view, url_id = opened(app, "connect --provider acme")
        assert view["title"]["text"] == "Connect Acme AI"
        assert inputs(view) == ["provider", "label", "region", "api_token", "backfill_days"]
        region = next(b for b in view["blocks"] if b.get("block_id") == "region")
        assert region["optional"] is True and region["hint"]["text"].startswith("Where your Acme")
        assert "Tokens are made in" not in json.dumps(view)  # its key_page, in the host's words:
        assert "Keys are made in acme.example > Settings > Tokens" in text_of(view)

        body = submit(app, view, region="ap", api_token=DEMO_TOKEN, backfill_days="30").json()
        assert list(body["errors"]) == ["region"]
        body = submit(app, view, api_token="acme-unknown-token", backfill_days="30").json()
        assert (
            list(body["errors"]) == ["api_token"] and "has expired" in body["errors"]["api_token"]
        )
        assert submit(app, view, api_token=DEMO_TOKEN, backfill_days="30").text == ""

        done = text_of(app.reply(url_id, 2, timeout=30))
        account, name = ACCOUNTS["us"]  # the region left empty: the provider's default
        assert f"Acme AI account `{name} ({account})`" in done and "Backfilled 30 days" in done

        seen = words(open_home(app))
        assert seen.startswith("Acme AI spend")  # the one provider in scope, by its name
        assert "Acme's costs leave out fine-tuning jobs" in seen
        with app.runtime.db.session() as session:
            workspace_id = workspace_for_slack_team(session, TEAM, "acme").id
            digest = build_digest(
                session,
                workspace_id,
                "day",
                datetime.now(UTC).date(),
                providers=app.runtime.providers,
            )
        assert digest.title.startswith("Daily Acme AI spend")

        view, _ = opened(app, "update-key Acme")
        assert inputs(view) == ["api_token"] and view["title"]["text"] == "New Acme AI key"
        assert connect_view  # the same builder serves every provider: no form of its own
