"""Typed run events: what widgets, logs and progress bars observe.

The engine emits one ``Event`` per state change of a task and two for the run
itself. Observers are plain callables run synchronously on the event loop, so
they must be quick; the widget coalesces them into at most ~10 front-end
updates a second.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

_NO_DATA: Mapping[str, Any] = MappingProxyType({})

EventKind = Literal[
    "run_started",
    "queued",
    "started",
    "retrying",
    "done",
    "cached",
    "failed",
    "skipped",
    "cancelled",
    "run_finished",
]

#: Status a task has after an event of each kind.
STATUS_AFTER: Mapping[str, str] = {
    "queued": "ready",
    "started": "running",
    "retrying": "waiting",
    "done": "done",
    "cached": "cached",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
}

#: Statuses after which a task will not change again in this run.
FINAL_STATUSES = frozenset({"done", "cached", "failed", "skipped", "cancelled"})


class Event(NamedTuple):
    """Something that happened in a run.

    ``time`` is seconds since the run started (monotonic clock); ``task_id`` is
    None for run-level events. ``data`` carries kind-specific details: the retry
    delay for ``retrying``, token counts for ``done``, the final counts for
    ``run_finished``. (A NamedTuple: immutable and cheap to make — a run emits
    three per task.)
    """

    kind: EventKind
    run_id: str
    time: float
    task_id: str | None = None
    attempt: int = 0
    error: str | None = None
    data: Mapping[str, Any] = _NO_DATA

    def __str__(self) -> str:  # type: ignore[override]
        who = f" {self.task_id}" if self.task_id else ""
        extra = f" (attempt {self.attempt})" if self.attempt > 1 else ""
        error = f": {self.error}" if self.error else ""
        return f"[{self.time:8.3f}s] {self.kind}{who}{extra}{error}"
