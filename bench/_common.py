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
