"""Pure functions over a DAG given as index lists: the order, the cycle, the ranks.

The scheduler (and anything else that needs them) builds on these: tasks are
numbered in the order given, each with the list of its dependencies' numbers.

* ``topological`` — Kahn's algorithm; a cycle raises ``CycleError`` with the
  cycle named (as ``graphlib.CycleError`` does), found by walking the tasks Kahn
  left until one repeats;
* ``levels`` / ``bottom_levels`` — each task's longest chain of durations to the
  end (HEFT's upward rank), one pass in reverse topological order;
* ``default_priorities`` and ``ranks`` — the usual ranking, critical path first,
  an explicit per-task priority comparing first.

Everything is O(V + E) and allocates tuples where it can: a scheduler lives as
long as its run, and the garbage collector ignores tuples of ints.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class CycleError(ValueError):
    """The dependencies contain a cycle.

    ``cycle`` lists it with the first task repeated at the end, each task a
    dependency of the next (as in ``graphlib.CycleError``).
    """

    def __init__(self, cycle: list[str]):
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join(cycle))


def index_parents(dependencies: Mapping[str, Iterable[str]]) -> tuple[list[str], list[list[int]]]:
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


def topological(
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


def levels(
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
    order, parents = index_parents(dependencies)
    topo, _children = topological(order, parents)
    level = levels(order, parents, topo, durations)
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


def ranks(order: list[str], values: list[Any]) -> list[int]:
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


def zero_like(value: Any) -> Any:
    """The priority of a task given none: 0, or a tuple of zeros shaped like the others."""
    return tuple(zero_like(v) for v in value) if isinstance(value, tuple) else 0


def check_ids(what: str, ids: Iterable[str], index: Mapping[str, int]) -> None:
    for tid in ids:
        if tid not in index:
            raise ValueError(f"{what} names unknown task {tid!r}")
