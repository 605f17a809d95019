"""OpenAI and Anthropic through the host's terminal path, against their stand-ins.

The providers are loaded as the app loads them, through their entry points
(``XAI_USAGE_NO_PLUGINS=0``), and the host is unchanged: ``connect --provider``
reads the key from the variable the provider declares, backfills, and the
month's figures by model are each stand-in's own, to the last digit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from providers.anthropic.sandbox import DEMO_KEY as ANTHROPIC_KEY
from providers.anthropic.sandbox import DEMO_ORG as ANTHROPIC_ORG
from providers.anthropic.sandbox import AnthropicStandIn
from providers.openai.sandbox import DEMO_KEY as OPENAI_KEY
from providers.openai.sandbox import DEMO_ORG as OPENAI_ORG
from providers.openai.sandbox import OpenAIStandIn

# The CLI reads the real clock; the stand-ins serve as of this moment, so what they
# served and what they say they served cannot drift apart while a test runs.
NOW = datetime.now(UTC)
TODAY = NOW.date()


@pytest.fixture
def openai():
    with OpenAIStandIn(clock=lambda: NOW) as stand_in:
        yield stand_in


@pytest.fixture
def anthropic():
    with AnthropicStandIn(clock=lambda: NOW) as stand_in:
        yield stand_in


@pytest.fixture
def env(openai, anthropic) -> dict[str, str]:
    return {
        "XAI_USAGE_NO_PLUGINS": "0",
        "OPENAI_API_URL": openai.url,
        "OPENAI_ADMIN_KEY": OPENAI_KEY,
        "ANTHROPIC_API_URL": anthropic.url,
        "ANTHROPIC_ADMIN_KEY": ANTHROPIC_KEY,
        "XAI_USAGE_HTTP_DEADLINE": "5",
    }


def by_model(cli, env, *period: str) -> tuple[dict[str, Decimal], Decimal]:
    code, out, err = cli(*period, "--by", "model", "--format", "json", env=env)
    assert code == 0, err
    report = json.loads(out)
    return {r["key"]: Decimal(r["cost_usd"]) for r in report["rows"]}, Decimal(report["total_usd"])


@pytest.mark.parametrize(
    ("name", "label", "mask"),
    [
        ("openai", "Production — OpenAI", "sk-admin-…beef"),
        ("anthropic", "Production — Anthropic", "sk-ant-admin…beef"),
    ],
)
def test_connect_from_the_terminal_then_the_month_is_the_stand_ins_own(
    cli, env, openai, anthropic, name, label, mask
) -> None:
    stand_in, org, key = {
        "openai": (openai, OPENAI_ORG, OPENAI_KEY),
        "anthropic": (anthropic, ANTHROPIC_ORG, ANTHROPIC_KEY),
    }[name]

    code, out, err = cli("connect", "--provider", name, env=env)

    assert code == 0, err
    assert f"Connected “{label}” ({mask})" in out
    assert f"Backfilled “{label}”: 90 days" in out
    assert key not in out + err
    month, total = by_model(cli, env, "month")
    assert month == stand_in.costs_by_model(org, TODAY.replace(day=1), TODAY)
    assert total == sum(month.values())
    start = TODAY - timedelta(days=89)
    ninety, _ = by_model(cli, env, "range", start.isoformat(), TODAY.isoformat())
    assert ninety == stand_in.costs_by_model(org, start, TODAY)
    # Every cost window crossed pages: the stand-ins answer 7 days a page.
    assert len(stand_in.requests) > 90 / 7


def test_both_in_one_workspace_each_keep_their_own_models(cli, env, openai, anthropic) -> None:
    assert cli("connect", "--provider", "openai", env=env)[0] == 0
    assert cli("connect", "--provider", "anthropic", env=env)[0] == 0

    month, total = by_model(cli, env, "month")

    first = TODAY.replace(day=1)
    expected = openai.costs_by_model(OPENAI_ORG, first, TODAY)
    expected |= anthropic.costs_by_model(ANTHROPIC_ORG, first, TODAY)
    assert month == expected and total == sum(expected.values())


def test_a_project_key_is_refused_with_what_to_paste_and_nothing_is_saved(cli, env) -> None:
    wrong = {**env, "OPENAI_ADMIN_KEY": "sk-proj-AbCdEf0123456789AbCdEf0123456789"}

    code, out, err = cli("connect", "--provider", "openai", env=wrong)

    assert code == 1
    assert "That is a project API key" in err and "sk-admin-" in err
    assert "sk-proj-AbCdEf" not in out + err
    assert "No connections yet" in cli("status", env=env)[1]


def test_a_revoked_key_is_named_and_nothing_is_saved(cli, env, anthropic) -> None:
    anthropic.revoke_key(ANTHROPIC_KEY)

    code, _, err = cli("connect", "--provider", "anthropic", env=env)

    assert code == 1 and "disabled or deleted" in err
    assert "No connections yet" in cli("status", env=env)[1]


# -- sandbox --provider: each provider's stand-in, found through its capability ----


def sandbox_process(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, list[str]]:
    """``xai-usage sandbox ARGS`` in its own process, and what it printed before serving."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
    env["XAI_USAGE_DATA_DIR"] = str(tmp_path / "data")
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
    )
    lines = []
    while not lines or lines[-1] != "Stop it with Ctrl-C.":
        line = process.stdout.readline()
        if not line:
            process.kill()
            raise AssertionError(f"sandbox stopped early: {process.stderr.read()}")
        lines.append(line.rstrip("\n"))
    return process, lines


def stop(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=10)
    finally:
        process.kill()


@pytest.mark.parametrize(
    ("args", "setting", "credentials", "path", "headers"),
    [
        (
            ("--provider", "openai"),
            "OPENAI_API_URL",
            f"  Admin key {OPENAI_KEY}",
            "/v1/organization/costs?start_time=0&end_time=86400",
            {"Authorization": f"Bearer {OPENAI_KEY}"},
        ),
        (
            ("--provider", "anthropic"),
            "ANTHROPIC_API_URL",
            f"  Admin key {ANTHROPIC_KEY}",
            "/v1/organizations/me",
            {"x-api-key": ANTHROPIC_KEY, "anthropic-version": "2023-06-01"},
        ),
        (
            (),  # no --provider: xAI's, as ever
            "XAI_MANAGEMENT_API_URL",
            "  Team ID 65c1e471-205f-4566-9c5a-07198bcdf4ce, Management key "
            "xai-mgmt-demo-4b1f2e9c7d6a5b3e8f0a1c2d3e4fbeef",
            "/auth/management-keys/validation",
            {"Authorization": "Bearer xai-mgmt-demo-4b1f2e9c7d6a5b3e8f0a1c2d3e4fbeef"},
        ),
    ],
)
def test_sandbox_serves_the_named_providers_stand_in_until_ctrl_c(
    tmp_path, args, setting, credentials, path, headers
) -> None:
    process, lines = sandbox_process(tmp_path, *args)
    try:
        url = lines[0].rpartition(" at ")[2]
        assert lines[1] == f"  export {setting}={url}"
        assert lines[2] == credentials
        # What it printed is enough to call it.
        assert httpx.get(url + path, headers=headers, timeout=5).status_code == 200
    finally:
        assert stop(process) == 0


def test_sandbox_for_an_unknown_provider_is_one_line_naming_those_loaded(cli, env) -> None:
    code, _, err = cli("sandbox", "--provider", "bogus", env=env)

    assert code == 1
    assert err == (
        "xai-usage: no provider named 'bogus' is loaded (loaded: anthropic, openai, xai)\n"
    )


def test_sandbox_for_a_provider_without_a_stand_in_says_which_have_one(tmp_path) -> None:
    from bot import cli
    from bot.config import Settings
    from bot.grammar import UsageError, parse
    from bot.runtime import Runtime
    from providers.manager import ProviderRegistry, load_providers, plugin_manager
    from tests.providers.test_contract import OldProvider

    runtime = Runtime(Settings.from_env({"XAI_USAGE_DATA_DIR": str(tmp_path)}))
    shipped = load_providers({}, pm=plugin_manager(load_entry_points=True))
    runtime.providers = ProviderRegistry([*shipped, OldProvider()])  # replaces the lazy load

    with pytest.raises(UsageError) as refused:
        cli.sandbox(parse(["sandbox", "--provider", "old"], surface="cli"), runtime, cli.Console())

    assert str(refused.value) == (
        "Old has no local stand-in to serve. Providers with one: anthropic, openai, xai."
    )


def test_no_admin_key_reaches_output_or_a_log_line(tmp_path, env, db, store_key) -> None:
    import base64

    from tests.conftest import xai_usage_in_process

    full = {
        **env,
        "XAI_USAGE_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": db.url,
        "XAI_USAGE_ENCRYPTION_KEY": base64.b64encode(store_key).decode(),
        "XAI_USAGE_LOG_LEVEL": "DEBUG",
    }
    for name in ("openai", "anthropic"):
        done = xai_usage_in_process(full, "connect", "--provider", name)
        assert done.returncode == 0, done.stderr
        assert "HTTP Request: GET" in done.stderr  # the log was on, and saw the requests
        for key in (OPENAI_KEY, ANTHROPIC_KEY):
            assert key not in done.stdout + done.stderr


# -- connect --provider: the provider's own fields, and two organizations side by side -----


def test_two_openai_organizations_connect_side_by_side_and_status_names_each(
    cli, env, openai
) -> None:
    second_key = "sk-admin-second0openai0organization0keyfeed"
    openai.add_organization("org-second")
    openai.add_key(second_key, "org-second")

    assert cli("connect", "--provider", "openai", "--label", "Research", env=env)[0] == 0
    code, out, err = cli(
        "connect",
        "--provider",
        "openai",
        "--label",
        "Product",
        env={**env, "OPENAI_ADMIN_KEY": second_key},
    )
    assert code == 0, err
    assert f"OpenAI account {openai.identity('org-second')}" in out

    rows = json.loads(cli("status", "--format", "json", env=env)[1])
    assert [(r["label"], r["provider_name"], r["account"]) for r in rows] == [
        ("Product", "OpenAI", openai.identity("org-second")),
        ("Research", "OpenAI", openai.identity(OPENAI_ORG)),
    ]
    month, _ = by_model(cli, env, "month")
    first = TODAY.replace(day=1)
    expected: dict[str, Decimal] = {}
    for org in (OPENAI_ORG, "org-second"):
        for model, usd in openai.costs_by_model(org, first, TODAY).items():
            expected[model] = expected.get(model, Decimal(0)) + usd
    assert month == expected  # both, each counted once

    # The first organization again, with another of its admin keys: refused, one line.
    other = OPENAI_KEY[:-4] + "0000"
    openai.add_key(other, OPENAI_ORG)
    code, out, err = cli("connect", "--provider", "openai", env={**env, "OPENAI_ADMIN_KEY": other})
    assert code == 1 and out == "" and err.count("\n") == 2  # "Testing…", then one line
    assert "already connected here as “Research”" in err
    assert "`xai-usage update-key Research`" in err


def test_a_field_the_provider_does_not_have_or_a_key_as_a_flag_is_refused_first(
    cli, env, openai
) -> None:
    requests = len(openai.requests)
    code, _, err = cli("connect", "--provider", "openai", "--team-id", "abc", env=env)
    assert code == 1 and "OpenAI has no field --team-id" in err
    assert "Its fields: none: it needs only a key" in err
    code, _, err = cli("connect", "--provider", "openai", "--admin-key", OPENAI_KEY, env=env)
    assert code == 1 and "Admin key is a secret: it is never typed on the command line" in err
    assert "OPENAI_ADMIN_KEY" in err and OPENAI_KEY not in err
    code, _, err = cli("connect", "--provider", "nobody", env=env)
    assert code == 1 and "no provider named 'nobody' is loaded" in err
    assert len(openai.requests) == requests  # nothing was sent anywhere
    assert "No connections yet" in cli("status", env=env)[1]


def test_help_connect_and_providers_list_each_providers_fields(cli, env) -> None:
    code, out, _ = cli("help", "connect", env=env)
    assert code == 0
    assert "Usage: xai-usage connect [--provider NAME]" in out and "[--FIELD VALUE]" in out
    lines = {line.split()[0]: line for line in out.splitlines()[-3:]}
    assert "--team-id (Team ID)" in lines["xai"] and "XAI_MANAGEMENT_KEY" in lines["xai"]
    assert "Admin key from standard input, the prompt, OPENAI_ADMIN_KEY" in lines["openai"]
    assert "ANTHROPIC_ADMIN_KEY" in lines["anthropic"]
    code, out, _ = cli("providers", env=env)
    assert code == 0 and "[providers.openai.provider]" in out and "--team-id" in out


def test_a_report_states_each_providers_caveats_only_where_its_figures_are(
    cli, env, openai, anthropic
) -> None:
    assert cli("connect", "--provider", "openai", "--label", "OA", env=env)[0] == 0
    assert cli("connect", "--provider", "anthropic", "--label", "AN", env=env)[0] == 0
    priority = "leaves out Priority Tier costs"
    free_text = "line items are free text"

    out = cli("month", env=env)[1]
    assert priority in out and free_text in out
    out = cli("month", "--connection", "OA", env=env)[1]
    assert free_text in out and priority not in out
    report = json.loads(cli("month", "--connection", "AN", "--format", "json", env=env)[1])
    assert len(report["caveats"]) == 1 and priority in report["caveats"][0]
