"""Which task runs next: a pure, synchronous state machine over a DAG.

Shaped like CPython's ``graphlib.TopologicalSorter``: the caller drives it —
``get_ready()`` hands out tasks that may start now (and takes their slots),
``done(id)`` / ``failed(id)`` report outcomes, ``requeue(id)`` returns a task
that waited out a retry backoff. No clock, no threads, no asyncio, no I/O: the
engine does the waiting and this module decides.

A task moves through these states::

    pending ─► ready ─► running ─► done
       │         ▲  ▲      │
       │         │  │      ├─► waiting ─► (requeue) ─► ready     retries left
       │         │  │      ├─► failed                            descendants ─► skipped
       │         │  │      └─► held (defer: handed back)
       └─► held ─┘  └── (release)                                a *gated* task is held
                                                                 instead of becoming ready
    any unfinished task ─► cancelled                             descendants ─► skipped

A *gated* task (``gated=``, ``gate()``) that has all its dependencies done is
``held`` rather than ready: it takes no slot and waits for ``release()``
(someone approved it) or ``cancel()`` (someone rejected it). ``defer()`` hands
a task just taken from ``get_ready`` back as held, freeing its slot. ``add()``
grows the graph while it runs (a plan still being written): new tasks may
depend on any known task, so no cycle can form.

The whole state is kept incrementally, so a run costs O(V + E) plus a heap
operation per hand-out, however it is driven:

* ``missing[i]`` counts the dependencies of task i not done yet; ``done()``
  decrements it for each child and a child reaching 0 becomes ready.
* Ready tasks wait in one heap per *resource class* — the (pool, units) a task
  holds while running, ``max_workers`` being the pool ``"workers"``. All tasks
  of a class fit or none does, so ``get_ready`` looks only at the head of each
  class: a full pool never makes it scan the tasks queued for that pool, and
  tasks needing free pools are not blocked behind them. Entries are ints,
  ``rank << 32 | index``, so heap comparisons are integer comparisons.
* A failure or cancellation skips pending descendants in one walk that stops at
  tasks already finished; a skipped task is never visited again.

``rank`` orders tasks by priority, highest first, ties in the order given.
``default_priorities`` gives the usual ranking: critical path first (the
longest chain of estimated durations from a task to the end), an explicit
per-task priority comparing first so it overrides.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

TaskState = Literal[
    "pending", "held", "ready", "running", "waiting", "done", "failed", "cancelled", "skipped"
]
STATES: tuple[TaskState, ...] = (
    "pending",
    "held",
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
"""The pool ``max_workers`` fills: every task holds one unit of it while running."""

_INDEX = 0xFFFFFFFF  # low 32 bits of a heap entry: the task's index


class CycleError(ValueError):
    """The dependencies contain a cycle.

    ``cycle`` lists it with the first task repeated at the end, each task a
    dependency of the next (as in ``graphlib.CycleError``).
    """

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


@dataclass(frozen=True, slots=True)
class Failure:
    """What ``failed()`` decided, so the engine knows whether to schedule a retry."""

    task_id: str
    retry: bool  # True: the task is "waiting"; requeue() it after a backoff
    attempt: int  # attempts used so far (1 after the first failure)
    skipped: tuple[str, ...]  # descendants that became "skipped" (empty when retry is True)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A copy of the whole state at one moment: O(V) to take, for displays and tests."""

    states: Mapping[str, TaskState]
    counts: Mapping[TaskState, int]  # every state, zeros included
    attempts: Mapping[str, int]
    running: frozenset[str]
    in_use: Mapping[str, int]  # pool -> units held by running tasks ("workers" included)


# --- graph helpers (pure functions over indices) ------------------------------------------


def _index_parents(dependencies: Mapping[str, Iterable[str]]) -> tuple[list[str], list[list[int]]]:
    """The ids in the order given, and each task's distinct dependencies as indices."""
    order = list(dependencies)
    index = {tid: i for i, tid in enumerate(order)}
    parents: list[list[int]] = []
    for tid in order:
        deps = dependencies[tid]
        if isinstance(deps, str):
            raise ValueError(
                f"dependencies of task {tid!r} must be a collection of ids, not the string {deps!r}"
            )
        ps = []
        for dep in dict.fromkeys(deps):  # drops repeats in O(degree), keeps the order
            j = index.get(dep)
            if j is None:
                raise ValueError(f"task {tid!r} depends on unknown task {dep!r}")
            ps.append(j)
        parents.append(ps)
    return order, parents


def _topological(
    order: list[str], parents: list[list[int]]
) -> tuple[list[int], list[tuple[int, ...]]]:
    """Kahn's algorithm over indices: (a topological order, children tuples) or CycleError."""
    n = len(order)
    children: list[list[int]] = [[] for _ in range(n)]
    missing = [len(p) for p in parents]
    for i, ps in enumerate(parents):
        for p in ps:
            children[p].append(i)  # children end up in the given order
    stack = [i for i in range(n) if not missing[i]]
    out: list[int] = []
    while stack:
        i = stack.pop()
        out.append(i)
        for c in children[i]:
            missing[c] -= 1
            if not missing[c]:
                stack.append(c)
    if len(out) < n:
        raise CycleError(_find_cycle(order, parents, missing))
    # tuples of ints drop out of the garbage collector's tracking, lists never do: a
    # scheduler lives as long as its run, and ten thousand tracked lists make the
    # collector's full passes slower for everything else in the process
    return out, [tuple(c) if c else () for c in children]


def _find_cycle(order: list[str], parents: list[list[int]], missing: list[int]) -> list[str]:
    """Every task Kahn left has a dependency also left: follow them until one repeats."""
    left = {i for i in range(len(order)) if missing[i]}
    seen: dict[int, int] = {}
    path: list[int] = []
    node = min(left)
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = next(p for p in parents[node] if p in left)
    cycle = path[seen[node] :]
    cycle.reverse()  # each one a dependency of the next
    first = cycle.index(min(cycle))  # start at the task given first: the same cycle, same text
    names = [order[i] for i in cycle[first:] + cycle[:first]]
    return [*names, names[0]]


def _levels(
    order: list[str], parents: list[list[int]], topo: list[int], durations: Mapping[str, float]
) -> list[float]:
    """Bottom level of every task, by index: one pass in reverse topological order."""
    level = [0.0] * len(order)
    below = [0.0] * len(order)  # the best level among the task's children seen so far
    for i in reversed(topo):
        level[i] = here = float(durations.get(order[i]) or 0.0) + below[i]
        for p in parents[i]:
            if here > below[p]:
                below[p] = here
    return level


def bottom_levels(
    dependencies: Mapping[str, Iterable[str]], durations: Mapping[str, float]
) -> dict[str, float]:
    """Longest chain of durations from each task to any sink, its own included. O(V+E).

    This is HEFT's "upward rank": starting the task with the largest bottom level
    first keeps the critical path moving. Tasks missing from ``durations`` count 0.
    """
    order, parents = _index_parents(dependencies)
    topo, _children = _topological(order, parents)
    level = _levels(order, parents, topo, durations)
    return {tid: level[i] for i, tid in enumerate(order)}


def default_priorities(
    dependencies: Mapping[str, Iterable[str]],
    durations: Mapping[str, float],
    explicit: Mapping[str, float | None] | None = None,
) -> dict[str, tuple[float, float]]:
    """Critical path first: ``(explicit priority or 0, bottom level)`` per task, higher first.

    The explicit priority compares first, so a user's priority overrides the
    critical path and the bottom level only breaks ties among equals.
    """
    levels = bottom_levels(dependencies, durations)
    explicit = explicit or {}
    return {tid: (float(explicit.get(tid) or 0.0), level) for tid, level in levels.items()}


def _ranks(order: list[str], values: list[Any]) -> list[int]:
    """Each task's position when sorted by priority, highest first, ties in the given order."""
    try:
        # reverse=True keeps equal keys in their original order (sort stability)
        ranked = sorted(range(len(order)), key=values.__getitem__, reverse=True)
    except TypeError:
        raise ValueError(
            "priorities must be comparable with each other (numbers, or tuples of numbers of "
            "one length)"
        ) from None
    rank = [0] * len(order)
    for r, i in enumerate(ranked):
        rank[i] = r
    return rank


def _zero_like(value: Any) -> Any:
    """The priority of a task given none: 0, or a tuple of zeros shaped like the others."""
    return tuple(_zero_like(v) for v in value) if isinstance(value, tuple) else 0


def _check_ids(what: str, ids: Iterable[str], index: Mapping[str, int]) -> None:
    for tid in ids:
        if tid not in index:
            raise ValueError(f"{what} names unknown task {tid!r}")


# --- the scheduler -----------------------------------------------------------------------


class Scheduler:
    """Hands out ready tasks within pool capacities, highest priority first.

    ``dependencies`` maps every task id to the ids it depends on; its order is
    the tie-break. ``priority`` ranks tasks, higher first (numbers or tuples;
    a task it does not name counts 0). Given ``durations``, the ranking is
    critical path first (see ``default_priorities``) and ``priority`` holds only
    the explicit per-task overrides. ``resources`` maps a task to the units of
    named ``pools`` it holds while running; ``max_workers`` is one more pool,
    ``"workers"``, that every task holds one unit of. ``retries`` gives extra
    attempts (one number for all, or per task); ``completed`` names tasks done
    before the run starts (cached results).
    """

    __slots__ = (
        "_attempts",
        "_capacity",
        "_children",
        "_class_of",
        "_counts",
        "_gated",
        "_heaps",
        "_ids",
        "_in_use",
        "_index",
        "_limits",
        "_missing",
        "_needs",
        "_newly_held",
        "_next_rank",
        "_rank",
        "_retries",
        "_state",
        "_workers",
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
        gated: Iterable[str] = (),
    ) -> None:
        order, parents = _index_parents(dependencies)
        topo, self._children = _topological(order, parents)
        n = len(order)
        index = {tid: i for i, tid in enumerate(order)}
        self._ids = order
        self._index = index

        self._capacity = capacities = self._capacities(pools, max_workers)
        self._workers = max_workers
        self._in_use = dict.fromkeys(capacities, 0)
        self._classify(order, resources or {}, capacities, index)
        self._rank = self._rank_tasks(order, parents, topo, index, priority, durations)
        self._next_rank = n
        self._retries = self._retry_budget(order, retries, index)
        self._gated = [False] * n
        self._newly_held: list[str] = []
        for tid in gated:
            self._gated[self._i(tid)] = True

        self._attempts = [0] * n
        self._state: list[TaskState] = ["pending"] * n
        self._counts: dict[TaskState, int] = dict.fromkeys(STATES, 0)
        self._counts["pending"] = n
        self._missing = [len(ps) for ps in parents]
        self._start(completed, topo)

    # --- construction ------------------------------------------------------------------

    @staticmethod
    def _capacities(pools: Mapping[str, int] | None, max_workers: int | None) -> dict[str, int]:
        capacities: dict[str, int] = {}
        for pool, capacity in (pools or {}).items():
            if pool == WORKERS:
                raise ValueError(f"pool name {WORKERS!r} is reserved for max_workers")
            if capacity < 1:
                raise ValueError(
                    f"pool {pool!r} must have a capacity of at least 1, not {capacity}"
                )
            capacities[pool] = capacity
        if max_workers is not None:
            if max_workers < 1:
                raise ValueError(f"max_workers must be at least 1, not {max_workers}")
            capacities[WORKERS] = max_workers
        return capacities

    def _classify(
        self,
        order: list[str],
        resources: Mapping[str, Mapping[str, int]],
        capacities: dict[str, int],
        index: Mapping[str, int],
    ) -> None:
        """Group tasks by what they hold while running: one ready heap per distinct need."""
        _check_ids("resources", resources, index)
        workers = WORKERS in capacities
        plain = ((WORKERS, 1),) if workers else ()
        classes: dict[tuple[tuple[str, int], ...], int] = {plain: 0}
        needs = [plain]
        class_of = [0] * len(order)
        for tid, wanted in resources.items():
            if not wanted:
                continue
            need = _need_of(tid, wanted, capacities, workers)
            cls = classes.get(need)
            if cls is None:
                cls = classes[need] = len(needs)
                needs.append(need)
            class_of[index[tid]] = cls
        self._needs = needs
        # a class fits when every pool it needs has in_use <= capacity - units
        self._limits = [tuple((p, capacities[p] - u) for p, u in need) for need in needs]
        self._class_of = class_of
        self._heaps: list[list[int]] = [[] for _ in needs]

    @staticmethod
    def _rank_tasks(
        order: list[str],
        parents: list[list[int]],
        topo: list[int],
        index: Mapping[str, int],
        priority: Mapping[str, Any] | None,
        durations: Mapping[str, float] | None,
    ) -> list[int]:
        if priority:
            _check_ids("priority", priority, index)
        if durations is not None:
            level = _levels(order, parents, topo, durations)
            if not priority:
                return _ranks(order, level)
            boost = [float(priority.get(tid) or 0.0) for tid in order]
            return _ranks(order, list(zip(boost, level, strict=True)))
        if not priority:
            return list(range(len(order)))
        given = [v for v in priority.values() if v is not None]
        default = _zero_like(given[0]) if given else 0
        values = [priority.get(tid) for tid in order]
        return _ranks(order, [default if v is None else v for v in values])

    @staticmethod
    def _retry_budget(
        order: list[str], retries: Mapping[str, int] | int, index: Mapping[str, int]
    ) -> list[int]:
        if isinstance(retries, int):
            if retries < 0:
                raise ValueError(f"retries must be at least 0, not {retries}")
            return [retries] * len(order)
        _check_ids("retries", retries, index)
        for tid, extra in retries.items():
            if extra < 0:
                raise ValueError(f"retries of task {tid!r} must be at least 0, not {extra}")
        return [retries.get(tid, 0) for tid in order]

    def _start(self, completed: Iterable[str], topo: list[int]) -> None:
        """Mark cached tasks done, then queue every pending task with nothing missing."""
        index, state, missing, children = self._index, self._state, self._missing, self._children
        for tid in completed:
            i = index.get(tid)
            if i is None:
                raise ValueError(f"completed names unknown task {tid!r}")
            if state[i] != "done":
                self._move(i, "done")
                for c in children[i]:
                    missing[c] -= 1
        for i in topo:
            if not missing[i] and state[i] == "pending":
                self._make_ready(i)

    # --- queries -----------------------------------------------------------------------

    @property
    def order(self) -> tuple[str, ...]:
        """The task ids in the order given."""
        return tuple(self._ids)

    def state(self, task_id: str) -> TaskState:
        return self._state[self._i(task_id)]

    def attempts(self, task_id: str) -> int:
        """How many times ``get_ready`` has handed the task out."""
        return self._attempts[self._i(task_id)]

    def count(self, state: TaskState) -> int:
        """How many tasks are in ``state`` now (kept as states change: O(1))."""
        return self._counts[state]

    def is_active(self) -> bool:
        """True while some task is not finished (done, failed, cancelled or skipped)."""
        c = self._counts
        return c["pending"] + c["held"] + c["ready"] + c["running"] + c["waiting"] > 0

    def is_gated(self, task_id: str) -> bool:
        """Whether the task will be (or is) held instead of becoming ready."""
        return self._gated[self._i(task_id)]

    def has_held(self) -> bool:
        """Whether some task became held since the last ``take_held``."""
        return bool(self._newly_held)

    def take_held(self) -> list[str]:
        """Tasks that became held since the last call (in that order), to be announced."""
        held, self._newly_held = self._newly_held, []
        return held

    def snapshot(self) -> Snapshot:
        ids, state = self._ids, self._state
        return Snapshot(
            states=dict(zip(ids, state, strict=True)),
            counts=dict(self._counts),
            attempts=dict(zip(ids, self._attempts, strict=True)),
            running=frozenset(tid for tid, s in zip(ids, state, strict=True) if s == "running"),
            in_use=dict(self._in_use),
        )

    # --- handing out work --------------------------------------------------------------

    def get_ready(self, limit: int | None = None) -> list[str]:
        """Start as many ready tasks as the pools allow (at most ``limit``), best first.

        The tasks become running and hold their slots until ``done``, ``failed``
        or ``cancel``. Returns ``[]`` when nothing can start now.
        """
        in_use = self._in_use
        if self._workers is not None and in_use[WORKERS] >= self._workers:
            return []  # every task needs a worker: no need to look at the queues
        heaps, limits, state = self._heaps, self._limits, self._state
        # classes whose head can start now; in_use only grows during this call, so a
        # class that does not fit now will not fit later in it either
        open_classes = []
        for cls, heap in enumerate(heaps):
            while heap and state[heap[0] & _INDEX] != "ready":
                heapq.heappop(heap)  # a ready task cancelled since it was queued
            if heap:
                for p, most in limits[cls]:
                    if in_use[p] > most:
                        break
                else:
                    open_classes.append(cls)
        out: list[str] = []
        if not open_classes:
            return out
        wanted = len(self._ids) if limit is None else limit
        ids, needs, attempts, counts = self._ids, self._needs, self._attempts, self._counts
        while open_classes and len(out) < wanted:
            best = open_classes[0]
            if len(open_classes) > 1:
                head = heaps[best][0]
                for cls in open_classes:
                    if heaps[cls][0] < head:
                        best, head = cls, heaps[cls][0]
            i = heapq.heappop(heaps[best]) & _INDEX
            for p, u in needs[best]:
                in_use[p] += u
            state[i] = "running"
            attempts[i] += 1
            out.append(ids[i])
            still_open = []
            for cls in open_classes:
                heap = heaps[cls]
                while heap and state[heap[0] & _INDEX] != "ready":
                    heapq.heappop(heap)
                if heap:
                    for p, most in limits[cls]:
                        if in_use[p] > most:
                            break
                    else:
                        still_open.append(cls)
            open_classes = still_open
        counts["ready"] -= len(out)
        counts["running"] += len(out)
        return out

    def done(self, task_id: str) -> list[str]:
        """A running task finished: free its slots; return the tasks that became ready
        (gated ones that became held instead are reported by ``take_held``)."""
        i = self._running(task_id)
        self._release(i)
        self._move(i, "done")
        ready = []
        missing, state = self._missing, self._state
        for c in self._children[i]:
            missing[c] -= 1
            # a child already done (a cached result) stays done
            if not missing[c] and state[c] == "pending":
                self._make_ready(c)
                if state[c] == "ready":  # not held by a gate
                    ready.append(self._ids[c])
        return ready

    def failed(self, task_id: str, *, retryable: bool = True) -> Failure:
        """A running task failed: it waits for a retry if it may, else it fails.

        A task fails for good when ``retryable`` is false or it has used all
        ``retries + 1`` attempts; its pending descendants are then skipped.
        """
        i = self._running(task_id)
        self._release(i)
        attempt = self._attempts[i]
        if retryable and attempt <= self._retries[i]:
            self._move(i, "waiting")
            return Failure(task_id, True, attempt, ())
        self._move(i, "failed")
        return Failure(task_id, False, attempt, self._skip_below(i))

    def requeue(self, task_id: str) -> None:
        """A waiting task's backoff is over: queue it again (held, if it was gated since)."""
        i = self._i(task_id)
        if self._state[i] != "waiting":
            raise ValueError(
                f"task {task_id!r} is not waiting for a retry (it is {self._state[i]})"
            )
        self._make_ready(i)

    def cancel(self, task_id: str) -> tuple[str, ...]:
        """Cancel one unfinished task (freeing its slots); return the descendants skipped.

        Cancelling a finished task does nothing and returns ``()``.
        """
        i = self._i(task_id)
        current = self._state[i]
        if current in _TERMINAL:
            return ()
        if current == "running":
            self._release(i)
        self._move(i, "cancelled")  # a queued entry is dropped when it reaches a heap's top
        return self._skip_below(i)

    def cancel_all(self) -> tuple[str, ...]:
        """Cancel every unfinished task, running ones included; return them in the given order."""
        out = []
        state = self._state
        for i, tid in enumerate(self._ids):
            current = state[i]
            if current in _TERMINAL:
                continue
            if current == "running":
                self._release(i)
            self._move(i, "cancelled")
            out.append(tid)
        return tuple(out)

    # --- gates ---------------------------------------------------------------------------

    def gate(self, task_id: str) -> None:
        """From now on the task is held instead of becoming ready (if it is not yet)."""
        i = self._i(task_id)
        self._gated[i] = True
        if self._state[i] == "ready":
            self._move(i, "held")  # its heap entry is dropped when it reaches the top
            self._newly_held.append(task_id)

    def release(self, task_id: str) -> None:
        """Let a gated task go: a held one becomes ready; a pending one no longer waits
        for a release once its dependencies are done."""
        i = self._i(task_id)
        self._gated[i] = False
        if self._state[i] == "held":
            self._make_ready(i)

    def defer(self, task_id: str) -> None:
        """Hand back a task ``get_ready`` just gave out: it is held (and gated), its slots
        are free, and the hand-out does not count as an attempt."""
        i = self._running(task_id)
        self._release(i)
        self._attempts[i] -= 1
        self._gated[i] = True
        self._move(i, "held")
        self._newly_held.append(task_id)

    # --- growing the graph ------------------------------------------------------------------

    def add(
        self,
        dependencies: Mapping[str, Iterable[str]],
        *,
        resources: Mapping[str, Mapping[str, int]] | None = None,
        retries: Mapping[str, int] | int = 0,
        gated: Iterable[str] = (),
    ) -> tuple[list[str], tuple[str, ...]]:
        """Add tasks while the run goes; return (those that became ready, those skipped).

        Each new task may depend on tasks already known or added before it in
        ``dependencies``. New tasks rank after every task already known, in the
        order given (the whole graph is not known, so there is no critical path
        to rank by). A task below a failed or cancelled one is skipped at once;
        gated tasks whose dependencies are done are held (see ``take_held``).
        """
        index, ids = self._index, self._ids
        new = list(dependencies)
        for tid in new:
            if tid in index:
                raise ValueError(f"task {tid!r} already exists")
        first = len(ids)
        for k, tid in enumerate(new):
            index[tid] = first + k
        try:
            parents = []
            for tid in new:
                deps = dependencies[tid]
                if isinstance(deps, str):
                    raise ValueError(
                        f"dependencies of task {tid!r} must be a collection of ids, "
                        f"not the string {deps!r}"
                    )
                ps = []
                for dep in dict.fromkeys(deps):
                    j = index.get(dep)
                    if j is None or j >= index[tid]:
                        raise ValueError(f"task {tid!r} depends on unknown task {dep!r}")
                    ps.append(j)
                parents.append(ps)
            capacities = self._capacity
            classes = {need: cls for cls, need in enumerate(self._needs)}
            class_of = []
            for tid in new:
                wanted = (resources or {}).get(tid)
                if not wanted:
                    class_of.append(0)
                    continue
                need = _need_of(tid, wanted, capacities, WORKERS in capacities)
                cls = classes.get(need)
                if cls is None:
                    cls = classes[need] = len(self._needs)
                    self._needs.append(need)
                    self._limits.append(tuple((p, capacities[p] - u) for p, u in need))
                    self._heaps.append([])
                class_of.append(cls)
        except ValueError:
            for tid in new:
                del index[tid]
            raise
        budget = retries if isinstance(retries, int) else None
        gates = set(gated)
        state, missing, counts = self._state, self._missing, self._counts
        ready: list[str] = []
        skipped: list[str] = []
        for k, tid in enumerate(new):
            i = first + k
            ids.append(tid)
            self._children.append(())
            self._class_of.append(class_of[k])
            self._rank.append(self._next_rank)
            self._next_rank += 1
            self._retries.append(budget if budget is not None else retries.get(tid, 0))  # type: ignore[union-attr]
            self._attempts.append(0)
            self._gated.append(tid in gates)
            state.append("pending")
            counts["pending"] += 1
            left = 0
            dead = False
            for p in parents[k]:
                self._children[p] = (*self._children[p], i)
                if state[p] in ("failed", "cancelled", "skipped"):
                    dead = True
                elif state[p] != "done":
                    left += 1
            missing.append(left)
            if dead:
                self._move(i, "skipped")
                skipped.append(tid)
            elif not left:
                self._make_ready(i)
                if state[i] == "ready":
                    ready.append(tid)
        return ready, tuple(skipped)

    # --- internals ---------------------------------------------------------------------

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
        if self._gated[i]:
            self._move(i, "held")
            self._newly_held.append(self._ids[i])
            return
        self._move(i, "ready")
        heapq.heappush(self._heaps[self._class_of[i]], self._rank[i] << 32 | i)

    def _release(self, i: int) -> None:
        in_use = self._in_use
        for p, u in self._needs[self._class_of[i]]:
            in_use[p] -= u

    def _skip_below(self, i: int) -> tuple[str, ...]:
        """Skip every pending task reachable from task i through pending tasks.

        Everything below an unfinished task is pending (nothing below it could
        start), except below tasks already done from the cache, where the walk
        stops. A skipped task is never pending again, so no task is walked twice
        over a whole run.
        """
        skipped = []
        state, children = self._state, self._children
        stack = list(children[i])
        while stack:
            c = stack.pop()
            if state[c] != "pending":
                continue
            self._move(c, "skipped")
            skipped.append(c)
            stack.extend(children[c])
        skipped.sort()
        return tuple(self._ids[c] for c in skipped)


def _need_of(
    tid: str, wanted: Mapping[str, int], capacities: Mapping[str, int], workers: bool
) -> tuple[tuple[str, int], ...]:
    """The (pool, units) a task holds while running; refuses needs no pool can meet."""
    need = []
    for pool, units in wanted.items():
        if pool == WORKERS or pool not in capacities:
            known = ", ".join(sorted(p for p in capacities if p != WORKERS)) or "none"
            raise ValueError(
                f"task {tid!r} needs pool {pool!r}, which does not exist (pools: {known})"
            )
        if units < 0:
            raise ValueError(f"task {tid!r} needs {units} units of pool {pool!r}; the least is 0")
        if units > capacities[pool]:
            raise ValueError(
                f"task {tid!r} needs {units} units of pool {pool!r} but its capacity "
                f"is {capacities[pool]}"
            )
        if units:
            need.append((pool, units))
    if workers:
        need.append((WORKERS, 1))
    return tuple(sorted(need))
