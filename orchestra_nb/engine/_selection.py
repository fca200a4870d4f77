"""Which tasks a run executes: what it continues from, what it recomputes, what it skips.

Pure functions over the graph, used by the driver before it builds its scheduler:

* ``Carried`` — what a run continues from an earlier one (``resume``): task
  records, results held in memory, the lease owner, the creation time;
* ``forced_ids`` — ``refresh``: tasks (and their descendants) whose stored
  results are ignored;
* ``selection`` — ``only``: the chosen tasks and their descendants, closed over
  the ancestors they need; everything else keeps its stored result or the
  outcome it had;
* ``scheduler_for`` — the scheduler a run (or a revised plan) starts from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._errors import RunError
from .._kinds import FINAL_STATUSES
from .._scheduler import Scheduler

if TYPE_CHECKING:
    from .._plan import TaskGraph
    from ._driver import Driver
    from ._options import RunOptions


@dataclass(frozen=True)
class Carried:
    """What a run continues from an earlier one (``resume``, or a retry of some tasks)."""

    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # id -> task record
    results: Mapping[str, tuple[str, Any]] = field(default_factory=dict)  # id -> (key, value)
    lease_owner: str | None = None
    created: float | None = None
    revisions: tuple[Any, ...] = ()  # the run's Revision list so far
    spent: Any = None  # Usage the earlier parts spent (None: sum the task records)


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


def scheduler_for(
    graph: TaskGraph, options: RunOptions, *, completed: Iterable[str], gated: Iterable[str]
) -> Scheduler:
    """The scheduler a run of ``graph`` starts from: ``completed`` tasks done, ``gated``
    ones held for approval, the run's pools and limits (a task's own retries only lower
    the run's)."""
    tasks = graph.tasks
    resources = {}
    for tid, t in tasks.items():
        wants = dict(t.resources) or ({t.kind: 1} if t.kind in options.pools else {})
        if wants:
            resources[tid] = wants
    retries: Mapping[str, int] | int = {t: options.task_retries(x) for t, x in tasks.items()}
    if len(set(retries.values())) == 1:  # type: ignore[union-attr]
        retries = next(iter(retries.values()))  # type: ignore[union-attr]  # one number for all
    return Scheduler(
        {tid: t.dependencies for tid, t in tasks.items()},
        priority={tid: t.priority for tid, t in tasks.items() if t.priority is not None},
        durations=graph.durations(),
        resources=resources,
        pools=dict(options.pools),
        max_workers=options.workers,
        retries=retries,
        completed=completed,
        gated=set(gated) & set(tasks),
    )


def leave_unselected(driver: Driver, chosen: set[str]) -> None:
    """Tasks outside ``only`` without a stored result are skipped in this run."""
    sched, status = driver.sched, driver.state.status
    assert sched is not None
    for tid in driver.graph.tasks:
        if tid in chosen or status[tid] in FINAL_STATUSES:
            continue
        for skipped in (tid, *sched.cancel(tid)):
            driver.finish(skipped, "skipped", error="not selected for this run", record=False)
