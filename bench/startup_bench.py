"""Start-up benchmark: a terminal command, as a whole process, as a person runs it.

``xai-usage today --by model`` is run 10 times (after one warm-up, so the
figure is not the first read of every file from disk) against a migrated
SQLite store holding one connection with 90 days of the xAI stand-in's
synthetic costs, loaded through ``xai-usage connect`` itself. The stand-in is
stopped before anything is timed; the project's modules are compiled once, as
an installed package's are. Target: the median under 0.3 s of wall
time; the interpreter starting and exiting on its own, and ``import
bot.cli``, are printed beside it for scale, each with its CPU time. Every
run must exit 0 and print the report's total, so a fast failure cannot pass.
"""

from __future__ import annotations

import base64
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.table import Column, Scoreboard, Table, ms
from providers.xai.sandbox import DEMO_KEY, DEMO_TEAM_ID, Sandbox

RUNS = 10
TARGET_S = 0.3
ROOT = Path(__file__).parents[1]

COLUMNS = (
    Column("process", 34, "<"),
    Column("median", 10),
    Column("min", 10),
    Column("max", 10),
    Column("cpu median", 11),
    Column("target", 8),
)


def _command() -> list[str]:
    """The installed console script beside this interpreter, as ``./run today`` uses it."""
    script = Path(sys.executable).with_name("xai-usage")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def _timed(
    argv: list[str], env: dict[str, str], check: str | None
) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system) of the runs after the warm-up."""
    times, cpu = [], []
    for run in range(RUNS + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, text=True, cwd=ROOT)
        elapsed = time.perf_counter() - began
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0 or (check and check not in done.stdout):
            raise RuntimeError(
                f"{' '.join(argv[-3:])} exited {done.returncode}: {done.stderr.strip()[-300:]}"
            )
        if run:  # the first run warms the disk cache
            times.append(elapsed)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu


def run(score: Scoreboard) -> None:
    table = Table(
        f"Start-up: `xai-usage today --by model` as a whole process, median of {RUNS}, "
        f"on a migrated SQLite store; target under {TARGET_S:.1f} s",
        COLUMNS,
    )
    with tempfile.TemporaryDirectory(prefix="xai-usage-bench-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("XAI_", "SLACK_"))}
        env.update(
            XAI_USAGE_DATA_DIR=data_dir,
            XAI_USAGE_NO_PLUGINS="1",
            XAI_USAGE_ENCRYPTION_KEY=base64.b64encode(os.urandom(32)).decode(),
        )
        env.pop("DATABASE_URL", None)
        # As installed: a package's modules are compiled once, not at every start. A
        # development shell may say not to write bytecode, which would time compiling
        # the project's sources at every run; the warm-up writes it here instead.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(Path(data_dir) / "pycache")
        with Sandbox() as stand_in:
            done = subprocess.run(
                [*_command(), "connect", "--team-id", DEMO_TEAM_ID, "--days", "90"],
                env={**env, "XAI_MANAGEMENT_API_URL": stand_in.url, "XAI_MANAGEMENT_KEY": DEMO_KEY},
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
        if done.returncode != 0 or "Backfilled" not in done.stdout:
            score.fail(f"startup: connect failed: {done.stderr.strip()[-300:]}")
            return
        try:
            rows = [
                ("python -c pass", [sys.executable, "-c", "pass"], None, None),
                (
                    "python -c 'import bot.cli'",
                    [sys.executable, "-c", "import bot.cli"],
                    None,
                    None,
                ),
                (
                    "xai-usage today --by model",
                    [*_command(), "today", "--by", "model"],
                    "Total",
                    TARGET_S,
                ),
            ]
            for label, argv, check, target in rows:
                times, cpu = _timed(argv, env, check)
                median = statistics.median(times)
                verdict = (
                    score.target(f"startup: today --by model under {target} s", median < target)
                    if target
                    else ""
                )
                table.row(
                    label,
                    ms(median),
                    ms(min(times)),
                    ms(max(times)),
                    ms(statistics.median(cpu)),
                    verdict,
                )
        except RuntimeError as error:
            score.fail(f"startup: {error}")
            return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    table.note(
        f"{os.cpu_count()} CPUs, load average {load:.1f} while measuring (CPU time, user + "
        "system, is less sensitive to other load than wall time; the target is wall time)"
    )
