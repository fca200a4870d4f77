"""Live resource use of a run: tokens a minute, money against the budget, tasks in
flight per pool, and this process's memory.

``run.resources()`` returns a ``Resources`` snapshot; its ``line`` is what the
CLI's progress bar shows beside the counts, and ``to_dict()`` is plain data for
a widget. Taking one costs O(tasks in flight), never O(tasks), so a progress view
may take one ten times a second on a 10,000-task run.

* **tokens a minute**: over the last minute of snapshots (``RATE_WINDOW``), or
  the run so far when there is no earlier snapshot, or once the run has ended;
* **money**: what the run spent (earlier parts included) at the price table in
  force, and the budget when it has one;
* **in flight**: running tasks per named pool (``pools=`` or a task's
  ``resources``), and in all against ``max_workers``;
* **memory**: this process's resident set from ``/proc/self/statm`` (Linux), else
  the peak from ``resource.getrusage`` (``memory_peak`` says which).
"""

from __future__ import annotations

import collections
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._cost import current_prices, format_tokens, format_usd

if TYPE_CHECKING:
    from .engine import Run

RATE_WINDOW = 60.0  # seconds of snapshots a tokens-a-minute figure spans


@dataclass(frozen=True)
class Resources:
    """One snapshot of what a run is using (see the module docstring)."""

    tokens: int
    tokens_per_minute: float
    usd: float | None
    budget_usd: float | None
    budget_tokens: int | None
    in_flight: dict[str, int] = field(default_factory=dict)
    capacity: dict[str, int] = field(default_factory=dict)
    memory_mb: float | None = None
    memory_peak: bool = False
    replayed: bool = False

    @property
    def line(self) -> str:
        """``1.2k tokens/min · $0.12 of $1.00 · running 3/5 (llm 2/2) · 210 MB``."""
        parts = []
        if self.tokens or self.tokens_per_minute:
            parts.append(f"{format_tokens(self.tokens_per_minute)} tokens/min")
        money = _money(self)
        if money:
            parts.append(money)
        running = f"running {self.in_flight.get('all', 0)}/{self.capacity.get('all', 0)}"
        pools = [
            f"{pool} {n}/{self.capacity[pool]}"
            for pool, n in self.in_flight.items()
            if pool != "all" and pool in self.capacity
        ]
        parts.append(running + (f" ({', '.join(pools)})" if pools else ""))
        if self.memory_mb is not None:
            parts.append(f"{'peak ' if self.memory_peak else ''}{self.memory_mb:,.0f} MB")
        return " · ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for a widget): every field, and ``line``."""
        return {
            "tokens": self.tokens,
            "tokens_per_minute": self.tokens_per_minute,
            "usd": self.usd,
            "budget_usd": self.budget_usd,
            "budget_tokens": self.budget_tokens,
            "in_flight": dict(self.in_flight),
            "capacity": dict(self.capacity),
            "memory_mb": self.memory_mb,
            "memory_peak": self.memory_peak,
            "replayed": self.replayed,
            "line": self.line,
        }


def _money(r: Resources) -> str:
    spent = format_usd(r.usd) if r.usd is not None else None
    label = " (replayed)" if r.replayed else ""
    if r.budget_usd is not None:
        return f"{spent or '?'} of {format_usd(r.budget_usd)}{label}"
    if r.budget_tokens is not None:
        return f"{r.tokens:,} of {r.budget_tokens:,} tokens{label}"
    return f"{spent}{label}" if spent is not None and r.tokens else ""


class TokenRate:
    """Tokens a minute from successive snapshots (one per run handle)."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque()

    def rate(self, now: float, tokens: int, elapsed: float, *, ended: bool) -> float:
        """Over the last minute of snapshots while the run goes (the run so far until
        there is a second's worth of them); over the whole run once it has ended."""
        average = tokens * 60.0 / elapsed if elapsed > 0 else 0.0
        if ended:
            return average
        samples = self._samples
        samples.append((now, tokens))
        while len(samples) > 2 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()
        first_at, first_tokens = samples[0]
        span = now - first_at
        if span >= 1.0:
            return max(0.0, (tokens - first_tokens) * 60.0 / span)
        return average


def measure(run: Run, rate: TokenRate) -> Resources:
    """A snapshot of ``run``'s resource use (``rate`` remembers earlier snapshots)."""
    spent = run.spent
    options = run.options
    budget = options.budget
    source = run.llm_source or {}
    model = source.get("model") or None
    usd = current_prices(budget.prices if budget else None).cost(model, spent)
    tasks = run.graph.tasks
    in_flight: dict[str, int] = {"all": 0}
    for tid in run.running():
        in_flight["all"] += 1
        task = tasks.get(tid)
        if task is None:
            continue
        for pool in dict(task.resources) or ({task.kind: 1} if task.kind in options.pools else {}):
            in_flight[pool] = in_flight.get(pool, 0) + 1
    capacity = {"all": options.workers, **dict(options.pools)}
    memory, peak = process_memory_mb()
    return Resources(
        tokens=spent.total_tokens,
        tokens_per_minute=rate.rate(
            time.monotonic(), run.usage.total_tokens, run.elapsed, ended=run.done
        ),
        usd=usd,
        budget_usd=budget.usd if budget else None,
        budget_tokens=budget.tokens if budget else None,
        in_flight=in_flight,
        capacity=capacity,
        memory_mb=memory,
        memory_peak=peak,
        replayed=source.get("kind") == "replay",
    )


def process_memory_mb() -> tuple[float | None, bool]:
    """This process's resident memory in MB and whether it is the peak instead (no
    /proc); (None, False) when neither can be read."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            resident_pages = int(fh.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / 1e6, False
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None, False
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return peak * scale / 1e6, True
