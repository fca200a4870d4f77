"""Helpers shared by the benchmarks: workload loading, timing, tables."""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing


def workloads_dir() -> Path:
    """The WfCommons plans: $ORCHESTRA_WORKLOADS, else ../shared/workloads/wfinstances."""
    given = os.environ.get("ORCHESTRA_WORKLOADS")
    path = Path(given) if given else ROOT.parent / "shared" / "workloads" / "wfinstances"
    if not path.is_dir():
        sys.exit(f"no workloads at {path}: set ORCHESTRA_WORKLOADS to the wfinstances folder")
    return path


def load_plans() -> dict[str, dict[str, Any]]:
    plans = {}
    for file in sorted(workloads_dir().glob("*.json")):
        plans[file.stem] = json.loads(file.read_text())
    return dict(sorted(plans.items(), key=lambda kv: len(kv[1]["subtasks"])))


def random_dag(n: int, *, seed: int = 1, window: int = 50, max_parents: int = 3) -> Any:
    """A reproducible random DAG: each task depends on up to ``max_parents`` of the
    ``window`` tasks before it, with an estimated time of 1-30 minutes."""
    import random

    from orchestra_nb import Task, TaskGraph

    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        k = min(i, rng.randint(0, max_parents))
        parents = sorted(rng.sample(range(max(0, i - window), i), k=k)) if i else []
        tasks.append(
            Task(
                f"t{i}",
                f"Task {i}",
                f"Step {i} of the work",
                dependencies=tuple(f"t{p}" for p in parents),
                estimated_time=rng.randint(1, 30),
            )
        )
    return TaskGraph(tasks, goal="a random plan")


def median_time(func: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        func()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str = "") -> str:
    rows = [[_cell(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    line = "  ".join("-" * w for w in widths)
    out = [title] if title else []
    out.append("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    out.append(line)
    for row in rows:
        out.append(
            "  ".join(
                c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths, strict=True)
            )
        )
    return "\n".join(out)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(".", "", 1).replace(",", "").replace("-", "", 1).replace("×", "").isdigit()
