"""Run every benchmark and print their tables (the figures quoted in release notes)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "overhead.py",
    "makespan.py",
    "cached_rerun.py",
    "llm_fanout.py",
    "batch.py",
    "widget.py",
    "dask_bench.py",
    "parse.py",
    "streaming.py",
    "replan.py",
]

if __name__ == "__main__":
    names = sys.argv[1:] or SCRIPTS
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        subprocess.run([sys.executable, str(HERE / name)], check=True, cwd=HERE)
