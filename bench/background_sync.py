"""A sync that never ends, in a process of its own: the load a ``xai-usage worker`` puts
on the machine while ``xai-usage serve --no-scheduler`` answers Slack (bench.slack_bench).

Run as ``python -m bench.background_sync WORKSPACE_ID`` with the store and the xAI
stand-in in the environment (``DATABASE_URL``, ``XAI_USAGE_ENCRYPTION_KEY``,
``XAI_MANAGEMENT_API_URL``, as ``xai-usage`` reads them): syncs every connection of
the workspace over and over, as the daily sync does, printing ``ready`` and then one
JSON line per run, until SIGTERM; the run under way then finishes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
import time

from bot.config import Settings
from bot.runtime import Runtime


def main() -> None:
    workspace_id = int(sys.argv[1])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    runtime = Runtime(Settings.from_env())
    engine = runtime.engine
    print("ready", flush=True)
    while not stop.is_set():
        began = time.perf_counter()
        results = asyncio.run(engine.sync_all(workspace_id, trigger="force", force=True))
        run = {
            "seconds": time.perf_counter() - began,
            "connections": len(results),
            "failed": sum(1 for r in results if not r.ok),
        }
        print(json.dumps(run), flush=True)
    runtime.close()


if __name__ == "__main__":
    main()
