"""Which task runs next: a pure, synchronous state machine over a DAG.

Shaped like CPython's ``graphlib.TopologicalSorter``: the caller drives it —
``get_ready()`` hands out tasks that may start now (and takes their slots),
``done(id)`` / ``failed(id)`` report outcomes, ``requeue(id)`` returns a task
that waited out a retry backoff. No clock, no threads, no asyncio: the engine
does the I/O and this module decides.

State, all kept incrementally so a whole run costs O(V + E):

* ``missing[i]`` — dependencies of task i not yet done; a task becomes ready
  when it reaches 0 (and it is still pending).
* ready tasks sit in one heap per *resource class* (the set of pools a task
  holds), ordered by a precomputed rank (highest priority first, ties in the
  order given). ``get_ready`` looks only at the top of each class, so a full
  pool never makes it scan the tasks waiting for that pool, and tasks needing
  free pools are not blocked behind them.
* a failure or cancellation skips pending descendants in one traversal that
  stops at finished tasks; every task is skipped at most once.

Priorities: ``default_priorities`` ranks by bottom level (the longest chain of
estimated durations from a task to the end — critical path first), with an
explicit per-task priority comparing first so it overrides.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

TaskState = Literal[
    "pending", "ready", "running", "waiting", "done", "failed", "cancelled", "skipped"
]
STATES: tuple[TaskState, ...] = (
    "pending",
    "ready",
    "running",
    "waiting",
    "done",
    "failed",
    "cancelled",
    "skipped",
)
_TERMINAL = frozenset({"done", "failed", "cancelled", "skipped"})
WORKERS = "workers"


class CycleError(ValueError):
    """The dependencies contain a cycle; ``cycle`` lists it, each a dependency of the next."""

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


@dataclass(frozen=True, slots=True)
class Failure:
    """What ``failed()`` decided."""

    task_id: str
    retry: bool
    attempt: int
    skipped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A copy of the whole state at one moment (O(V) to take; for displays, not hot paths)."""

    states: Mapping[str, TaskState]
    counts: Mapping[TaskState, int]
    attempts: Mapping[str, int]
    running: frozenset[str]
    in_use: Mapping[str, int]


def _topological(
    order: list[str], parents: list[list[int]]
) -> tuple[list[int], list[list[int]]] | CycleError:
    """Kahn's algorithm over indices: (order, children), or a CycleError (not raised)."""
    n = len(order)
    children: list[list[int]] = [[] for _ in range(n)]
    missing = [len(p) for p in parents]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)
    queue = [i for i in range(n) if missing[i] == 0]
    out: list[int] = []
    while queue:
        i = queue.pop()
        out.append(i)
        for c in children[i]:
            missing[c] -= 1
            if missing[c] == 0:
                queue.append(c)
    if len(out) == n:
        return out, children
    # every task left has a dependency that is also left: walk dependencies until one repeats
    left = {i for i in range(n) if missing[i] > 0}
    start = min(left)
    seen: dict[int, int] = {}
    path: list[int] = []
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in parents[node] if p in left)
    cycle = path[seen[node] :]
    cycle.reverse()  # dependency first
    names = [order[i] for i in cycle]
    return CycleError([*names, names[0]])


def _index_parents(dependencies: Mapping[str, Iterable[str]]) -> tuple[list[str], list[list[int]]]:
    order = list(dependencies)
    index = {tid: i for i, tid in enumerate(order)}
    parents: list[list[int]] = []
    for tid in order:
        ps = []
        for dep in dependencies[tid]:
            j = index.get(dep)
            if j is None:
                raise ValueError(f"task {tid!r} depends on unknown task {dep!r}")
            if j not in ps:
                ps.append(j)
        parents.append(ps)
    return order, parents


def bottom_levels(
    dependencies: Mapping[str, Iterable[str]], durations: Mapping[str, float]
) -> dict[str, float]:
    """Longest chain of durations from each task to any sink, its own included. O(V+E)."""
    order, parents = _index_parents(dependencies)
    found = _topological(order, parents)
    if isinstance(found, CycleError):
        raise found
    level = _levels(order, parents, found[0], durations)
    return {tid: level[i] for i, tid in enumerate(order)}


def _levels(
    order: list[str], parents: list[list[int]], topo: list[int], durations: Mapping[str, float]
) -> list[float]:
    level = [0.0] * len(order)
    below = [0.0] * len(order)  # best level among children so far
    for i in reversed(topo):
        level[i] = float(durations.get(order[i], 0.0)) + below[i]
        for p in parents[i]:
            if level[i] > below[p]:
                below[p] = level[i]
    return level


def default_priorities(
    dependencies: Mapping[str, Iterable[str]],
    durations: Mapping[str, float],
    explicit: Mapping[str, float | None] | None = None,
) -> dict[str, tuple[float, float]]:
    """Critical path first: ``(explicit priority or 0, bottom level)``, higher first."""
    levels = bottom_levels(dependencies, durations)
    explicit = explicit or {}
    return {tid: (float(explicit.get(tid) or 0.0), level) for tid, level in levels.items()}


class Scheduler:
    """Hands out ready tasks within pool capacities, highest priority first.

    ``dependencies`` maps every task id to the ids it depends on (its order is
    the tie-break). ``priority`` ranks tasks (higher first); with ``durations``
    the rank is critical path first (see ``default_priorities``) and ``priority``
    holds only explicit overrides. ``resources`` maps a task to the units it holds of named
    ``pools`` while running; ``max_workers`` is one more pool every task holds
    one unit of. ``retries`` gives extra attempts (per task or for all);
    ``completed`` names tasks already done before the run (cached results).
    """

    __slots__ = (
        "_attempts",
        "_children",
        "_class_of",
        "_classes",
        "_counts",
        "_heaps",
        "_ids",
        "_in_use",
        "_index",
        "_missing",
        "_needs",
        "_parents",
        "_pools",
        "_rank",
        "_retries",
        "_state",
    )

    def __init__(
        self,
        dependencies: Mapping[str, Iterable[str]],
        *,
        priority: Mapping[str, Any] | None = None,
        durations: Mapping[str, float] | None = None,
        resources: Mapping[str, Mapping[str, int]] | None = None,
        pools: Mapping[str, int] | None = None,
        max_workers: int | None = None,
        retries: Mapping[str, int] | int = 0,
        completed: Iterable[str] = (),
    ) -> None:
        order, parents = _index_parents(dependencies)
        n = len(order)
        found = _topological(order, parents)
        if isinstance(found, CycleError):
            raise found
        topo, self._children = found
        self._ids = order
        self._index = {tid: i for i, tid in enumerate(order)}
        self._parents = parents

        capacities = {str(k): int(v) for k, v in (pools or {}).items()}
        for pool, capacity in capacities.items():
            if capacity < 1:
                raise ValueError(
                    f"pool {pool!r} must have a capacity of at least 1, not {capacity}"
                )
        if max_workers is not None:
            if max_workers < 1:
                raise ValueError(f"max_workers must be at least 1, not {max_workers}")
            capacities[WORKERS] = max_workers
        self._pools = capacities
        self._in_use = dict.fromkeys(capacities, 0)

        # resource classes: tasks holding the same units of the same pools share a heap
        resources = resources or {}
        classes: dict[tuple[tuple[str, int], ...], int] = {}
        self._class_of = [0] * n
        self._needs: list[tuple[tuple[str, int], ...]] = []
        plain = ((WORKERS, 1),) if max_workers is not None else ()
        for i, tid in enumerate(order):
            wanted = resources.get(tid)
            if not wanted:  # the common case: only a worker slot
                need = plain
            else:
                need = self._need_of(tid, wanted, capacities, max_workers is not None)
            cls = classes.get(need)
            if cls is None:
                cls = classes[need] = len(self._needs)
                self._needs.append(need)
            self._class_of[i] = cls
        self._classes = len(self._needs)
        self._heaps: list[list[int]] = [[] for _ in range(self._classes)]

        # rank: position when sorted by priority, highest first; ties keep the given order.
        # With durations, the priority is (explicit priority or 0, bottom level): critical
        # path first, an explicit priority overriding.
        if durations is not None:
            explicit = priority or {}
            level = _levels(order, parents, topo, durations)
            boost = [float(explicit.get(tid) or 0.0) for tid in order] if explicit else None
            if boost is None:
                ranked = sorted(range(n), key=lambda i: -level[i])
            else:
                ranked = sorted(range(n), key=lambda i: (-boost[i], -level[i]))
            priority = None
        elif priority:
            default = _zero_like(next(iter(priority.values())))
            ranked = sorted(range(n), key=lambda i: _neg(priority.get(order[i], default)))
        else:
            ranked = None
        if ranked is not None:
            rank = [0] * n
            for r, i in enumerate(ranked):
                rank[i] = r
            self._rank = rank
        else:
            self._rank = list(range(n))

        if isinstance(retries, int):
            self._retries = [retries] * n
        else:
            self._retries = [int(retries.get(tid, 0)) for tid in order]
        self._attempts = [0] * n
        self._state: list[TaskState] = ["pending"] * n
        self._counts: dict[TaskState, int] = dict.fromkeys(STATES, 0)
        self._counts["pending"] = n
        self._missing = [len(ps) for ps in parents]
        self._start_ready(completed, topo)

    @staticmethod
    def _need_of(
        tid: str, wanted: Mapping[str, int], capacities: dict[str, int], workers: bool
    ) -> tuple[tuple[str, int], ...]:
        """The (pool, units) a task holds while running; refuses pools that cannot hold it."""
        wants = dict(wanted)
        for pool, units in wants.items():
            if pool not in capacities or pool == WORKERS:
                known = ", ".join(sorted(p for p in capacities if p != WORKERS)) or "none"
                raise ValueError(
                    f"task {tid!r} needs pool {pool!r}, which does not exist (pools: {known})"
                )
            if units > capacities[pool]:
                raise ValueError(
                    f"task {tid!r} needs {units} units of pool {pool!r} but its capacity "
                    f"is {capacities[pool]}"
                )
        if workers:
            wants[WORKERS] = 1
        return tuple(sorted((p, u) for p, u in wants.items() if u > 0))

    def _start_ready(self, completed: Iterable[str], topo: list[int]) -> None:
        children = self._children
        done_now = []
        for tid in completed:
            i = self._index.get(tid)
            if i is None:
                raise ValueError(f"completed names unknown task {tid!r}")
            if self._state[i] != "done":
                self._move(i, "done")
                done_now.append(i)
        for i in done_now:
            for c in children[i]:
                self._missing[c] -= 1
        for i in topo:
            if self._state[i] == "pending" and self._missing[i] == 0:
                self._make_ready(i)

    # --- queries ---------------------------------------------------------------------

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(self._ids)

    def state(self, task_id: str) -> TaskState:
        return self._state[self._i(task_id)]

    def attempts(self, task_id: str) -> int:
        return self._attempts[self._i(task_id)]

    def count(self, state: TaskState) -> int:
        return self._counts[state]

    def is_active(self) -> bool:
        """True while any task is not finished (done, failed, cancelled or skipped)."""
        c = self._counts
        return c["done"] + c["failed"] + c["cancelled"] + c["skipped"] < len(self._ids)

    def snapshot(self) -> Snapshot:
        ids = self._ids
        return Snapshot(
            states={tid: self._state[i] for i, tid in enumerate(ids)},
            counts=dict(self._counts),
            attempts={tid: self._attempts[i] for i, tid in enumerate(ids)},
            running=frozenset(tid for i, tid in enumerate(ids) if self._state[i] == "running"),
            in_use=dict(self._in_use),
        )

    # --- handing out work ------------------------------------------------------------

    def get_ready(self, limit: int | None = None) -> list[str]:
        """Ready tasks that fit in the pools now, best first; they become running."""
        out: list[str] = []
        heaps, needs, in_use, pools = self._heaps, self._needs, self._in_use, self._pools
        state = self._state
        while limit is None or len(out) < limit:
            best = -1
            best_rank = 0
            for cls in range(self._classes):
                heap = heaps[cls]
                while heap and state[heap[0] & 0xFFFFFFFF] != "ready":
                    heapq.heappop(heap)  # lazily drop cancelled entries
                if not heap:
                    continue
                r = heap[0] >> 32
                if best >= 0 and r >= best_rank:
                    continue
                if all(in_use[p] + u <= pools[p] for p, u in needs[cls]):
                    best, best_rank = cls, r
            if best < 0:
                break
            i = heapq.heappop(heaps[best]) & 0xFFFFFFFF
            for p, u in needs[best]:
                in_use[p] += u
            self._move(i, "running")
            self._attempts[i] += 1
            out.append(self._ids[i])
        return out

    def done(self, task_id: str) -> list[str]:
        """A running task finished: free its slots; return the tasks that became ready."""
        i = self._running(task_id)
        self._release(i)
        self._move(i, "done")
        ready = []
        missing, state = self._missing, self._state
        for c in self._children[i]:
            missing[c] -= 1
            if missing[c] == 0 and state[c] == "pending":
                self._make_ready(c)
                ready.append(self._ids[c])
        return ready

    def failed(self, task_id: str, *, retryable: bool = True) -> Failure:
        """A running task failed: retry it later if it may, else fail it and skip descendants."""
        i = self._running(task_id)
        self._release(i)
        attempt = self._attempts[i]
        if retryable and attempt <= self._retries[i]:
            self._move(i, "waiting")
            return Failure(task_id, True, attempt, ())
        self._move(i, "failed")
        return Failure(task_id, False, attempt, self._skip_below(i))

    def requeue(self, task_id: str) -> None:
        """A waiting task's backoff is over: it is ready again."""
        i = self._i(task_id)
        if self._state[i] != "waiting":
            raise ValueError(
                f"task {task_id!r} is not waiting for a retry (it is {self._state[i]})"
            )
        self._make_ready(i)

    def cancel(self, task_id: str) -> tuple[str, ...]:
        """Cancel one unfinished task (freeing its slots); return the descendants skipped."""
        i = self._i(task_id)
        current = self._state[i]
        if current in _TERMINAL:
            return ()
        if current == "running":
            self._release(i)
        self._move(i, "cancelled")
        return self._skip_below(i)

    def cancel_all(self) -> tuple[str, ...]:
        """Cancel every unfinished task; return their ids in the given order."""
        out = []
        for i, tid in enumerate(self._ids):
            current = self._state[i]
            if current in _TERMINAL:
                continue
            if current == "running":
                self._release(i)
            self._move(i, "cancelled")
            out.append(tid)
        return tuple(out)

    # --- internals -------------------------------------------------------------------------

    def _i(self, task_id: str) -> int:
        try:
            return self._index[task_id]
        except KeyError:
            raise ValueError(f"unknown task {task_id!r}") from None

    def _running(self, task_id: str) -> int:
        i = self._i(task_id)
        if self._state[i] != "running":
            raise ValueError(f"task {task_id!r} is not running (it is {self._state[i]})")
        return i

    def _move(self, i: int, new: TaskState) -> None:
        counts = self._counts
        counts[self._state[i]] -= 1
        counts[new] += 1
        self._state[i] = new

    def _make_ready(self, i: int) -> None:
        self._move(i, "ready")
        heapq.heappush(self._heaps[self._class_of[i]], (self._rank[i] << 32) | i)

    def _release(self, i: int) -> None:
        in_use = self._in_use
        for p, u in self._needs[self._class_of[i]]:
            in_use[p] -= u

    def _skip_below(self, i: int) -> tuple[str, ...]:
        """Skip every pending task reachable from i through unfinished tasks."""
        skipped = []
        stack = list(self._children[i])
        state = self._state
        while stack:
            c = stack.pop()
            if state[c] != "pending":
                continue  # finished tasks (e.g. cached) stop the walk; skipped ones were visited
            self._move(c, "skipped")
            skipped.append(c)
            stack.extend(self._children[c])
        skipped.sort()
        return tuple(self._ids[c] for c in skipped)


def _zero_like(value: Any) -> Any:
    return tuple(0 for _ in value) if isinstance(value, tuple) else 0


def _neg(value: Any) -> Any:
    """A sort key that orders descending for numbers and tuples of numbers."""
    if isinstance(value, tuple):
        return tuple(-v for v in value)
    return -value
