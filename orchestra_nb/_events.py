"""Typed run events: what widgets, logs and progress bars observe.

The engine emits one ``Event`` per state change of a task and two for the run
itself. Observers are plain callables run synchronously on the event loop, so
they must be quick; the widget coalesces them into at most ~10 front-end
updates a second.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, overload

_NO_DATA: Mapping[str, Any] = MappingProxyType({})

EventKind = Literal[
    "run_started",
    "task_added",
    "queued",
    "awaiting_approval",
    "approved",
    "rejected",
    "started",
    "retrying",
    "done",
    "cached",
    "failed",
    "skipped",
    "cancelled",
    "unsaved",
    "revision",
    "run_finished",
]

#: Status a task has after an event of each kind.
STATUS_AFTER: Mapping[str, str] = {
    "task_added": "pending",
    "queued": "ready",
    "awaiting_approval": "awaiting_approval",
    "approved": "ready",
    "rejected": "skipped",
    "started": "running",
    "retrying": "waiting",
    "done": "done",
    "cached": "cached",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
    "unsaved": "unsaved",
}


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


class EventLog(Sequence[Event]):
    """A run's events in order: a read-only sequence of ``Event``.

    Stored as plain tuples of strings and numbers (``data`` as its items) and made
    into ``Event`` when read. The garbage collector stops tracking such a tuple;
    an ``Event`` (a tuple subclass) or any tuple holding a dict it tracks for
    ever. A run of 10,000 tasks keeps 30,000 events: tracked, they made full
    collections a third of the engine's per-task cost.
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []

    def add(
        self,
        kind: str,
        run_id: str,
        time: float,
        task_id: str | None,
        attempt: int,
        error: str | None,
        data: Mapping[str, Any] | None,
    ) -> None:
        """Record an event from its fields (no ``Event`` is made for it)."""
        items = tuple(data.items()) if data else None
        self._rows.append((kind, run_id, time, task_id, attempt, error, items))

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...
    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        if isinstance(index, slice):
            return [_event(row) for row in self._rows[index]]
        return _event(self._rows[index])

    def __iter__(self) -> Iterator[Event]:
        return map(_event, self._rows)

    def __repr__(self) -> str:
        return f"EventLog({len(self._rows)} events)"


def _event(row: tuple[Any, ...]) -> Event:
    kind, run_id, time, task_id, attempt, error, items = row
    return Event(kind, run_id, time, task_id, attempt, error, dict(items) if items else _NO_DATA)
