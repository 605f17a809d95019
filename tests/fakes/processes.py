"""Processes of this project started at once, as replicas or a deploy would start them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).parents[2]


def run_together(
    args: Sequence[str], count: int, *, env: Mapping[str, str] | None = None, timeout: float = 120
) -> list[tuple[int, str, str]]:
    """``python ARGS…`` started ``count`` times at once from the project's root; each one's
    (exit status, output, errors) once all have ended."""
    processes = [
        subprocess.Popen(
            [sys.executable, *args],
            env=None if env is None else dict(env),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    outputs = [p.communicate(timeout=timeout) for p in processes]
    return [(p.returncode, out, err) for p, (out, err) in zip(processes, outputs, strict=True)]
