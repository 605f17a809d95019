"""``python -m bench [NAME …]``: the benchmarks, all by default (see BENCHMARKS).

Exits 0 when every benchmark ran and its checks held, whatever the targets
say (a MISS is a finding, not a crash); 1 when a check of what was stored or
served failed, since then the figures mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench.table import Scoreboard

BENCHMARKS = ("sync", "report", "slack", "digests", "http", "startup", "charts", "home")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks: sync, reports, the Slack app, digests, slow HTTP clients, "
        "start-up, charts, the App Home tab (see bench/*.py).",
    )
    parser.add_argument(
        "benchmarks",
        nargs="*",
        metavar="sync|report|slack|digests|http|startup|charts|home",
        help="which to run (default: all)",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.benchmarks if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r} (choose from {', '.join(BENCHMARKS)})")
    chosen = args.benchmarks or list(BENCHMARKS)

    score = Scoreboard()
    began = time.perf_counter()
    for name in BENCHMARKS:
        if name not in chosen:
            continue
        if name == "sync":
            from bench import sync_bench

            sync_bench.run(score)
        elif name == "report":
            from bench import report_bench

            report_bench.run(score)
        elif name == "slack":
            from bench import slack_bench

            slack_bench.run(score)
        elif name == "http":
            from bench import http_bench

            http_bench.run(score)
        elif name == "charts":
            from bench import charts_bench

            charts_bench.run(score)
        elif name == "digests":
            from bench import digest_bench

            digest_bench.run(score)
        elif name == "home":
            from bench import home_bench

            home_bench.run(score)
        else:
            from bench import startup_bench

            startup_bench.run(score)
    score.summary()
    print(f"Ran in {time.perf_counter() - began:.0f} s.")
    return 1 if score.failures else 0


if __name__ == "__main__":
    sys.exit(main())
