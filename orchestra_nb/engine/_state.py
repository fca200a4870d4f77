"""What a run knows while it goes: every task's status, result, error and times.

``RunState`` is plain data plus the two ways it changes: ``set_status`` (one
task moves, an event is recorded and observers hear of it) and ``emit`` (a
run-level event). The driver writes it; the ``Run`` handle and observers read
it. Status counts are kept as statuses change, so a progress line costs O(1)
however large the run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._events import STATUS_AFTER, Event, EventLog
from .._kinds import STATUSES

if TYPE_CHECKING:
    from ..llm import Usage

log = logging.getLogger("orchestra_nb")


@dataclass(frozen=True)
class Progress:
    """Counts for a progress line."""

    total: int
    done: int
    cached: int
    failed: int
    skipped: int
    cancelled: int
    running: int
    waiting: int
    tokens: int
    elapsed: float

    @property
    def finished(self) -> int:
        return self.done + self.cached + self.failed + self.skipped + self.cancelled

    def __str__(self) -> str:
        parts = [f"{self.done + self.cached}/{self.total} done"]
        for name in ("running", "waiting", "failed", "skipped", "cancelled", "cached"):
            value = getattr(self, name)
            if value:
                parts.append(f"{value} {name}")
        if self.tokens:
            parts.append(f"{self.tokens:,} tokens")
        parts.append(f"{self.elapsed:.1f}s")
        return " · ".join(parts)


class RunState:
    """The live record of one run (see the module docstring)."""

    def __init__(self, run_id: str, task_ids: Iterable[str]) -> None:
        self.run_id = run_id
        self.status: dict[str, str] = dict.fromkeys(task_ids, "pending")
        self.counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        self.counts["pending"] = len(self.status)
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.attempts: dict[str, int] = dict.fromkeys(self.status, 0)
        self.first_start: dict[str, float] = {}
        self.timeline: dict[str, tuple[float, float]] = {}
        self.usage_by_task: dict[str, Usage] = {}
        self.tokens = 0
        self.keys: dict[str, str] = {}
        self.events = EventLog()
        self.state = "pending"
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.t0 = time.monotonic()
        self.subscribers: list[Callable[[Event], None]] = []

    # --- changes ---------------------------------------------------------------------

    def set_status(
        self,
        tid: str,
        kind: str,
        *,
        attempt: int = 0,
        error: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Task ``tid`` had an event of ``kind``: move it to the status that follows."""
        new = STATUS_AFTER[kind]
        counts, status = self.counts, self.status
        counts[status[tid]] -= 1
        counts[new] += 1
        status[tid] = new
        self.emit(kind, tid, attempt=attempt, error=error, data=data)

    def restore(self, tid: str, status: str) -> None:
        """Set a task's status as a record says it ended (no event: nothing happened now)."""
        counts = self.counts
        counts[self.status[tid]] -= 1
        counts[status] += 1
        self.status[tid] = status

    def emit(
        self,
        kind: str,
        task_id: str | None = None,
        *,
        attempt: int = 0,
        error: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        at = time.monotonic() - self.t0
        self.events.add(kind, self.run_id, at, task_id, attempt, error, data)
        if not self.subscribers:
            return
        event = Event(kind, self.run_id, at, task_id, attempt, error, data or {})  # type: ignore[arg-type]
        for callback in self.subscribers:
            try:
                callback(event)
            except Exception:  # an observer must never break a run
                log.exception("event observer %r failed", callback)

    def add_usage(self, tid: str, usage: Usage) -> None:
        self.usage_by_task[tid] = usage
        self.tokens += usage.total_tokens

    def now(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.t0

    # --- views -----------------------------------------------------------------------

    def progress(self) -> Progress:
        c = self.counts
        end = self.finished_at if self.finished_at is not None else time.time()
        return Progress(
            total=len(self.status),
            done=c["done"],
            cached=c["cached"],
            failed=c["failed"],
            skipped=c["skipped"],
            cancelled=c["cancelled"],
            running=c["running"],
            waiting=c["waiting"],
            tokens=self.tokens,
            elapsed=0.0 if self.started_at is None else end - self.started_at,
        )
