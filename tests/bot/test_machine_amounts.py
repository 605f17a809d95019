"""Every amount a machine reads is written one way: fixed point, cents to nano-dollars.

Every JSON and CSV the terminal writes (reports in each grouping, ``status``, exports)
is scanned: an amount field is a string like ``630.10`` or ``3487.60392194``, never
``3.3E+2``, never 28 digits, never a float; unknown is ``null`` (or an empty CSV cell).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from tests.bot.test_cli import connect
from tests.conftest import xai_usage_in_process as xai_usage

AMOUNT = re.compile(r"^-?\d+\.\d{2,9}$")
GROUPINGS = ("model", "day", "week", "month", "connection", "key")


def amounts(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    """Every (field, value) whose field names an amount in dollars, however deep."""
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from amounts(inner, name)
    elif isinstance(value, list):
        for inner in value:
            yield from amounts(inner, key)
    elif key.endswith("_usd") or key in ("usd", "cost_usd"):
        yield key, value


def check(text: str) -> int:
    seen = 0
    for key, value in amounts(json.loads(text)):
        assert value is None or (isinstance(value, str) and AMOUNT.match(value)), (key, value)
        seen += value is not None
    return seen


def test_every_json_and_csv_amount_is_fixed_point_to_the_nano_dollar(cli_env) -> None:
    assert connect(cli_env, days="40").returncode == 0
    seen = 0
    for period in (["today"], ["month"], ["last-month"], ["range", "2026-01-01", "2026-01-31"]):
        for by in GROUPINGS:
            done = xai_usage(cli_env, *period, "--by", by, "--format", "json")
            assert done.returncode == 0, done.stderr
            seen += check(done.stdout)
            done = xai_usage(cli_env, *period, "--by", by, "--format", "csv")
            for row in csv.DictReader(io.StringIO(done.stdout)):
                assert row["cost_usd"] == "" or AMOUNT.match(row["cost_usd"]), row
    status = xai_usage(cli_env, "status", "--format", "json")
    seen += check(status.stdout)
    for period in (["month"], ["last-month"]):
        exported = xai_usage(cli_env, "export", *period, "--format", "json")
        seen += check(exported.stdout)
        detail = xai_usage(cli_env, "export", *period)
        for row in csv.DictReader(io.StringIO(detail.stdout)):
            assert row["cost_usd"] == "" or AMOUNT.match(row["cost_usd"]), row
    # A period nothing was fetched for is null, not "0"; there is one in January.
    january = json.loads(
        xai_usage(cli_env, "range", "2026-01-01", "2026-01-31", "--format", "json").stdout
    )
    assert january["total_usd"] is None
    assert seen > 100  # the scan read real figures, not only nulls
