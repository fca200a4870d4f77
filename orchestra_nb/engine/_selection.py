"""Which tasks a run executes: what it continues from, what it recomputes, what it skips.

Pure functions over the graph, used by the driver before it builds its scheduler:

* ``Carried`` — what a run continues from an earlier one (``resume``): task
  records, results held in memory, the lease owner, the creation time;
* ``forced_ids`` — ``refresh``: tasks (and their descendants) whose stored
  results are ignored;
* ``selection`` — ``only``: the chosen tasks and their descendants, closed over
  the ancestors they need; everything else keeps its stored result or the
  outcome it had.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import RunError

if TYPE_CHECKING:
    from .._plan import TaskGraph


@dataclass(frozen=True)
class Carried:
    """What a run continues from an earlier one (``resume``, or a retry of some tasks)."""

    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # id -> task record
    results: Mapping[str, tuple[str, Any]] = field(default_factory=dict)  # id -> (key, value)
    lease_owner: str | None = None
    created: float | None = None


def forced_ids(graph: TaskGraph, refresh: bool | Iterable[str]) -> set[str]:
    """The tasks whose stored results a run with this ``refresh`` ignores."""
    if refresh is True:
        return set(graph.tasks)
    if not refresh:
        return set()
    forced: set[str] = set()
    for tid in refresh:  # type: ignore[union-attr]
        if tid not in graph:
            raise RunError(f"cannot refresh unknown task {tid!r}")
        forced |= {tid, *graph.descendants(tid)}
    return forced


def selection(graph: TaskGraph, only: Iterable[str]) -> set[str]:
    """The chosen tasks and their descendants, with every ancestor these need."""
    chosen: set[str] = set()
    for tid in only:
        if tid not in graph:
            raise RunError(f"cannot run unknown task {tid!r}")
        chosen |= {tid, *graph.descendants(tid)}
    return chosen.union(*(graph.ancestors(tid) for tid in chosen))
