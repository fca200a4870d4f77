"""The plan model: ``Task``, ``TaskGraph`` and their validation.

A ``TaskGraph`` is always valid: every constructor and every edit checks ids,
dependencies and acyclicity, and an edit that would break the graph raises
``PlanError`` and leaves it exactly as it was. networkx holds the edges
(dependency -> dependent); tasks keep their plan order, which makes every
listing, drawing and tie-break deterministic.

This layer does no I/O beyond ``save``/``load`` and knows nothing of asyncio,
IPython or LLM clients.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import re
import statistics
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from ._errors import PlanError
from ._json_text import MAX_DEPTH
from ._kinds import DEFAULT_KIND
from ._parse import MAX_PLAN_CHARS, MAX_PLAN_TASKS, Entry, parse_duration_minutes, read_plan
from ._text import shorten

if TYPE_CHECKING:
    import networkx as nx

SEED_FIELDS = ("id", "name", "description", "dependencies", "estimated_time")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")
_EDITABLE = (
    "name",
    "description",
    "dependencies",
    "estimated_time",
    "kind",
    "function",
    "params",
    "priority",
    "resources",
    "retries",
    "timeout",
    "approval",
    "extra",
    "arguments",
)


@dataclass(frozen=True, eq=True)
class Task:
    """One subtask of a plan.

    ``estimated_time`` is in minutes (None when unknown); ``kind`` says which action
    runs it (``"llm"``, ``"python"``, ``"report"``); ``function`` names a registered
    Python function for ``kind="python"``; ``params`` are action parameters that
    change the result (and so the cache key); ``priority``, ``resources``,
    ``retries`` and ``timeout`` (seconds) steer scheduling only; ``approval``
    makes a run wait for a person to approve the task before it starts. ``extra``
    keeps fields this package does not know so a plan round-trips unchanged.
    ``arguments`` are the tool arguments a planner wrote for the step (a list, or
    a dict of named ones); a string ``"${id}"`` in them stands for the result of
    dependency ``id``. They are part of the task's definition and are given to
    its action (listed in an LLM task's prompt, bound to a Python function's
    parameters).
    """

    id: str
    name: str = ""
    description: str = ""
    dependencies: tuple[str, ...] = ()
    estimated_time: float | None = None
    kind: str = "llm"
    function: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    priority: float | None = None
    resources: Mapping[str, int] = field(default_factory=dict)
    retries: int | None = None
    timeout: float | None = None
    approval: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    arguments: Sequence[Any] | Mapping[str, Any] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _SAFE_ID.match(self.id):
            raise PlanError(
                f"task id {self.id!r} is not safe to use as a key: use up to 64 letters, "
                "digits, '_', '-' or '.', not starting with '-' or '.'",
                ids=[str(self.id)],
            )
        set_ = object.__setattr__
        set_(self, "name", str(self.name or "").strip() or self.id)
        set_(self, "description", str(self.description or "").strip())
        deps = self.dependencies
        if isinstance(deps, str):
            deps = (deps,)
        set_(self, "dependencies", tuple(dict.fromkeys(str(d) for d in deps)))
        if self.estimated_time is not None:
            set_(
                self,
                "estimated_time",
                parse_duration_minutes(
                    self.estimated_time, what=f"task {self.id!r}: estimated_time"
                ),
            )
        set_(self, "kind", (self.kind or DEFAULT_KIND).strip().lower())
        for name in ("params", "resources", "extra"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise PlanError(f"task {self.id!r}: {name} must be a mapping, not {value!r}")
            set_(self, name, dict(value))
        set_(self, "arguments", _arguments(self.arguments, self.id))
        for pool, units in self.resources.items():
            if not isinstance(units, int) or isinstance(units, bool) or units < 1:
                raise PlanError(
                    f"task {self.id!r}: resources[{pool!r}] must be a positive integer",
                    ids=[self.id],
                )
        if self.retries is not None and (not isinstance(self.retries, int) or self.retries < 0):
            raise PlanError(f"task {self.id!r}: retries must be an integer ≥ 0", ids=[self.id])
        if not isinstance(self.approval, bool):
            raise PlanError(f"task {self.id!r}: approval must be true or false", ids=[self.id])
        if self.timeout is not None and not self.timeout > 0:
            raise PlanError(f"task {self.id!r}: timeout must be positive seconds", ids=[self.id])

    def __repr__(self) -> str:
        # the dataclass repr, with arguments and approval only when set (most tasks have
        # neither, and notebook outputs stay as they were)
        shown = (
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in ("arguments", "approval") or getattr(self, f.name)
        )
        return f"Task({', '.join(shown)})"

    def replace(self, **changes: Any) -> Task:
        """A copy with some fields changed (validated like a new task)."""
        return dataclasses.replace(self, **changes)

    def definition(self) -> dict[str, Any]:
        """The fields that determine this task's result (input to its cache key).

        The id, dependencies (their keys enter the cache key separately), time
        estimate and scheduling hints are left out: they do not change what the
        task produces.
        """
        out = {
            "kind": self.kind,
            "name": self.name,
            "description": self.description,
            "function": self.function,
            "params": dict(self.params),
        }
        if self.arguments:  # only when set: keys of tasks without arguments stay as they were
            out["arguments"] = self.arguments
        return out

    def definition_json(self) -> str:
        """``definition()`` as canonical JSON, computed once (tasks never change)."""
        cached = self.__dict__.get("_definition_json")
        if cached is None:
            from ._cache import canonical_json

            cached = canonical_json(self.definition())
            object.__setattr__(self, "_definition_json", cached)
        return cached

    def to_dict(self) -> dict[str, Any]:
        """The task in the seed plan format, optional fields only when set."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "dependencies": list(self.dependencies),
            "estimated_time": self.estimated_time,
        }
        if self.kind != "llm":
            out["kind"] = self.kind
        for name in ("function", "priority", "retries", "timeout"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        for name in ("params", "resources"):
            value = getattr(self, name)
            if value:
                out[name] = dict(value)
        if self.approval:
            out["approval"] = True
        if self.arguments:
            out["arguments"] = self.arguments
        for key, value in self.extra.items():
            out.setdefault(key, value)
        return out


class CriticalPath(NamedTuple):
    """The longest chain of tasks by estimated time, and its length in minutes."""

    ids: tuple[str, ...]
    length: float


def safe_id(raw: str) -> str:
    """A store- and file-name-safe id for whatever an LLM wrote as an id."""
    text = _UNSAFE_CHARS.sub("_", str(raw).strip()).strip("_.-")
    text = re.sub(r"_{2,}", "_", text)
    if not text:
        return "task_" + hashlib.sha1(str(raw).encode()).hexdigest()[:8]
    if len(text) > 64:
        return text[:55] + "_" + hashlib.sha1(str(raw).encode()).hexdigest()[:8]
    return text


class TaskGraph:
    """A validated DAG of tasks; the object users plan, edit, draw and run.

    Build one with ``TaskGraph(tasks)``, ``TaskGraph.from_plan(text_or_dict)`` or
    ``TaskGraph.load(path)``. Edit it with ``add_task``, ``remove_task``,
    ``add_dependency``, ``remove_dependency`` and ``update_task``; every edit is
    validated and atomic. ``observe(callback)`` registers a function called with a
    small dict describing each successful edit, for code that keeps its own view of
    the graph in step with it.
    """

    def __init__(
        self, tasks: Iterable[Task] = (), *, goal: str | None = None, name: str | None = None
    ) -> None:
        import networkx as nx

        self.goal = (goal or "").strip() or None
        self.name = (name or "").strip() or None
        self._tasks: dict[str, Task] = {}
        self._graph: nx.DiGraph = nx.DiGraph()
        self._observers: list[Callable[[dict[str, Any]], None]] = []
        self._shared = False
        # what is derived from the tasks alone, shared with copies until either side edits
        self._derived: dict[str, Any] = {}
        self.version = 0
        problems: list[str] = []
        bad_ids: list[str] = []
        for task in tasks:
            if not isinstance(task, Task):
                raise PlanError(f"expected Task objects, got {type(task).__name__}")
            if task.id in self._tasks:
                problems.append(f"duplicate task id {task.id!r}")
                bad_ids.append(task.id)
                continue
            self._tasks[task.id] = task
        self._graph.add_nodes_from(self._tasks)
        for task in self._tasks.values():
            for dep in task.dependencies:
                if dep == task.id:
                    problems.append(f"task {task.id!r} depends on itself")
                    bad_ids.append(task.id)
                elif dep not in self._tasks:
                    problems.append(f"task {task.id!r} depends on unknown task {dep!r}")
                    bad_ids.extend((task.id, dep))
                else:
                    self._graph.add_edge(dep, task.id)
        if not self._tasks and not problems:
            problems.append("the plan has no tasks")
        if not problems:
            cycle = self._find_cycle()
            if cycle:
                problems.append(
                    "the plan has a dependency cycle: " + " -> ".join([*cycle, cycle[0]])
                )
                bad_ids.extend(cycle)
        if problems:
            raise PlanError(_summarize(problems), ids=dict.fromkeys(bad_ids))
        self._order = {tid: i for i, tid in enumerate(self._tasks)}

    # --- construction -----------------------------------------------------------

    @classmethod
    def from_plan(
        cls, data: Any, *, goal: str | None = None, max_tasks: int | None = None
    ) -> TaskGraph:
        """Read a plan from an LLM answer (text), a dict or a list; raise PlanError if unusable.

        The formats read are described in docs/plan-formats.md. ``max_tasks``
        refuses a larger plan before any task is built (default ``MAX_PLAN_TASKS``).
        """
        if isinstance(data, TaskGraph):
            return data.copy()
        try:
            raw = read_plan(data, max_tasks=max_tasks or MAX_PLAN_TASKS)
        except RecursionError:  # a last line of defence: every reader is bounded in depth
            raise PlanError(f"the plan nests too deep to read (the limit is {MAX_DEPTH})") from None
        return cls(_resolve(raw.entries), goal=goal or raw.goal, name=raw.name)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskGraph:
        """Load a plan saved with ``save`` (or any plan file in a format ``from_plan`` reads).

        A file longer than ``MAX_PLAN_CHARS`` is refused without reading it all.
        """
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(MAX_PLAN_CHARS + 1)
        if len(text) > MAX_PLAN_CHARS:
            size = os.path.getsize(path)
            raise PlanError(
                f"the plan file {os.fspath(path)!r} is {size / 1e6:.1f} MB, more than the "
                f"{MAX_PLAN_CHARS / 1e6:.0f} MB limit (MAX_PLAN_CHARS)"
            )
        return cls.from_plan(text)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the plan as JSON (atomically: a crash never leaves half a file)."""
        tmp = f"{os.fspath(path)}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())
            fh.write("\n")
        os.replace(tmp, path)

    def to_plan(self) -> dict[str, Any]:
        """The plan as a dict in the seed format: ``{"subtasks": [...]}`` plus goal/name if set."""
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.goal:
            out["goal"] = self.goal
        out["subtasks"] = [t.to_dict() for t in self._tasks.values()]
        return out

    def to_json(self, *, indent: int | None = 2) -> str:
        if indent is not None:
            return json.dumps(self.to_plan(), indent=indent, ensure_ascii=False)
        # compact: what every run record holds; a run's graph is a copy of the user's,
        # so the text is kept where copies share it
        cached = self._derived.get("json")
        if cached is None or cached[:2] != (self.goal, self.name):
            cached = (self.goal, self.name, json.dumps(self.to_plan(), ensure_ascii=False))
            self._derived["json"] = cached
        return cached[2]

    def copy(self) -> TaskGraph:
        """An independent copy (observers are not copied)."""
        new = TaskGraph.__new__(TaskGraph)
        new.goal, new.name, new.version = self.goal, self.name, self.version
        new._tasks = dict(self._tasks)
        # share the networkx graph until one side edits (copy on write): runs snapshot
        # their graph, and copying ten thousand nodes for nothing is not free
        new._graph = self._graph
        new._shared = self._shared = True
        new._derived = self._derived
        new._observers = []
        new._order = dict(self._order)
        return new

    # --- reading ----------------------------------------------------------------

    @property
    def tasks(self) -> Mapping[str, Task]:
        """Read-only view of id -> Task, in plan order."""
        return MappingProxyType(self._tasks)

    @property
    def nx_graph(self) -> nx.DiGraph:
        """A copy of the graph as networkx (edges go dependency -> dependent)."""
        return self._graph.copy()

    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(list(self._tasks.values()))

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __getitem__(self, task_id: str) -> Task:
        return self._get(task_id)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskGraph):
            return NotImplemented
        return (
            self.goal == other.goal
            and self.name == other.name
            and list(self._tasks.items()) == list(other._tasks.items())
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        goal = f", goal={shorten(self.goal, 60)!r}" if self.goal else ""
        return f"TaskGraph({len(self)} tasks, {self._graph.number_of_edges()} dependencies{goal})"

    @property
    def edges(self) -> list[tuple[str, str]]:
        """(dependency, dependent) pairs in plan order."""
        return [(dep, t.id) for t in self._tasks.values() for dep in t.dependencies]

    def dependencies(self, task_id: str) -> tuple[str, ...]:
        return self._get(task_id).dependencies

    def dependents(self, task_id: str) -> tuple[str, ...]:
        """Tasks that depend directly on ``task_id``, in plan order."""
        self._get(task_id)
        return tuple(sorted(self._graph.successors(task_id), key=self._order.__getitem__))

    def descendants(self, task_id: str) -> set[str]:
        import networkx as nx

        self._get(task_id)
        return nx.descendants(self._graph, task_id)

    def ancestors(self, task_id: str) -> set[str]:
        import networkx as nx

        self._get(task_id)
        return nx.ancestors(self._graph, task_id)

    def roots(self) -> list[str]:
        return [t.id for t in self._tasks.values() if not t.dependencies]

    def sinks(self) -> list[str]:
        return [tid for tid in self._tasks if self._graph.out_degree(tid) == 0]

    def topological_order(self) -> list[str]:
        """Ids with every task after its dependencies; ties in plan order."""
        cached = self._derived.get("topological_order")
        if cached is None:  # Kahn's algorithm, the ready task first in plan order
            place = self._order
            waiting: dict[str, int] = {}
            children: dict[str, list[str]] = {}
            for tid, task in self._tasks.items():
                waiting[tid] = len(task.dependencies)  # unique: Task removes repeats
                for dep in task.dependencies:
                    children.setdefault(dep, []).append(tid)
            ready = [(place[tid], tid) for tid, n in waiting.items() if n == 0]
            out = []
            while ready:
                tid = heapq.heappop(ready)[1]
                out.append(tid)
                for child in children.get(tid, ()):
                    waiting[child] -= 1
                    if not waiting[child]:
                        heapq.heappush(ready, (place[child], child))
            cached = self._derived["topological_order"] = tuple(out)
        return list(cached)

    def dependency_order(self) -> list[str]:
        """Ids with every task after its dependencies, in no particular tie order (fast)."""
        import networkx as nx

        return list(nx.topological_sort(self._graph))

    def topological_generations(self) -> list[list[str]]:
        """Layers of tasks that could run together; each layer in plan order."""
        import networkx as nx

        return [
            sorted(layer, key=self._order.__getitem__)
            for layer in nx.topological_generations(self._graph)
        ]

    def durations(self) -> dict[str, float]:
        """Estimated minutes per task; unknown estimates count as the median known one (or 1)."""
        known = [t.estimated_time for t in self._tasks.values() if t.estimated_time is not None]
        default = statistics.median(known) if known else 1.0
        return {
            tid: (t.estimated_time if t.estimated_time is not None else default)
            for tid, t in self._tasks.items()
        }

    def critical_path(self) -> CriticalPath:
        """The longest chain by estimated time (see ``durations`` for unknown estimates)."""
        cached = self._derived.get("critical_path")
        if cached is None:
            cached = self._derived["critical_path"] = self._critical_path()
        return cached

    def _critical_path(self) -> CriticalPath:
        weight = self.durations()
        best: dict[str, float] = {}
        prev: dict[str, str | None] = {}
        for tid in self.topological_order():
            deps = self._tasks[tid].dependencies
            parent = max(deps, key=lambda d: (best[d], -self._order[d])) if deps else None
            best[tid] = weight[tid] + (best[parent] if parent else 0.0)
            prev[tid] = parent
        end = max(best, key=lambda t: (best[t], -self._order[t]))
        path = [end]
        while prev[path[-1]] is not None:
            path.append(prev[path[-1]])  # type: ignore[arg-type]
        return CriticalPath(tuple(reversed(path)), best[end])

    # --- editing ----------------------------------------------------------------

    def observe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(change)`` after every successful edit."""
        self._observers.append(callback)

    def unobserve(self, callback: Callable[[dict[str, Any]], None]) -> None:
        self._observers = [cb for cb in self._observers if cb != callback]

    def add_task(self, task: Task | None = None, /, **fields: Any) -> Task:
        """Add a task (a ``Task`` or its fields); its dependencies must exist. Returns it."""
        if task is None:
            fields.setdefault("id", self._free_id())
            task = Task(**fields)
        elif fields:
            task = task.replace(**fields)
        if task.id in self._tasks:
            raise PlanError(f"a task with id {task.id!r} already exists", ids=[task.id])
        self._check_dependencies(task)
        self._own_graph()
        self._tasks[task.id] = task
        self._order[task.id] = max(self._order.values(), default=-1) + 1
        self._graph.add_node(task.id)
        self._graph.add_edges_from((dep, task.id) for dep in task.dependencies)
        self._changed({"op": "add_task", "id": task.id})
        return task

    def remove_task(self, task_id: str) -> Task:
        """Remove a task; tasks that depended on it lose that dependency."""
        task = self._get(task_id)
        for child in self.dependents(task_id):
            c = self._tasks[child]
            self._tasks[child] = c.replace(
                dependencies=tuple(d for d in c.dependencies if d != task_id)
            )
        del self._tasks[task_id]
        del self._order[task_id]
        self._own_graph()
        self._graph.remove_node(task_id)
        self._changed({"op": "remove_task", "id": task_id})
        return task

    def add_dependency(self, task_id: str, dependency_id: str) -> None:
        """Make ``task_id`` depend on ``dependency_id``; a cycle is refused, graph unchanged."""
        import networkx as nx

        task = self._get(task_id)
        self._get(dependency_id)
        if dependency_id == task_id:
            raise PlanError(f"task {task_id!r} cannot depend on itself", ids=[task_id])
        if dependency_id in task.dependencies:
            return
        if nx.has_path(self._graph, task_id, dependency_id):
            path = nx.shortest_path(self._graph, task_id, dependency_id)
            cycle = " -> ".join([*path, task_id])
            raise PlanError(
                f"adding {dependency_id!r} -> {task_id!r} would make a cycle: {cycle}",
                ids=path,
            )
        self._tasks[task_id] = task.replace(dependencies=(*task.dependencies, dependency_id))
        self._own_graph()
        self._graph.add_edge(dependency_id, task_id)
        self._changed({"op": "add_dependency", "id": task_id, "dependency": dependency_id})

    def remove_dependency(self, task_id: str, dependency_id: str) -> None:
        task = self._get(task_id)
        if dependency_id not in task.dependencies:
            raise PlanError(f"task {task_id!r} does not depend on {dependency_id!r}", ids=[task_id])
        self._tasks[task_id] = task.replace(
            dependencies=tuple(d for d in task.dependencies if d != dependency_id)
        )
        self._own_graph()
        self._graph.remove_edge(dependency_id, task_id)
        self._changed({"op": "remove_dependency", "id": task_id, "dependency": dependency_id})

    def update_task(self, task_id: str, **fields: Any) -> Task:
        """Change fields of a task (not its id); dependencies are checked like any edit."""
        import networkx as nx

        task = self._get(task_id)
        unknown = sorted(set(fields) - set(_EDITABLE))
        if unknown:
            raise PlanError(
                f"cannot update {', '.join(map(repr, unknown))} of task {task_id!r}; "
                f"editable fields: {', '.join(_EDITABLE)}",
                ids=[task_id],
            )
        new = task.replace(**fields)
        if new == task:
            return task
        if new.dependencies != task.dependencies:
            self._check_dependencies(new)
            trial = self._graph.copy()
            trial.remove_edges_from([(d, task_id) for d in task.dependencies])
            trial.add_edges_from((d, task_id) for d in new.dependencies)
            if not nx.is_directed_acyclic_graph(trial):
                cycle = [u for u, _v in nx.find_cycle(trial)]
                raise PlanError(
                    "these dependencies would make a cycle: " + " -> ".join([*cycle, cycle[0]]),
                    ids=cycle,
                )
            self._graph, self._shared = trial, False
        self._tasks[task_id] = new
        self._changed({"op": "update_task", "id": task_id, "fields": sorted(fields)})
        return new

    # --- internals --------------------------------------------------------------

    def _own_graph(self) -> None:
        if self._shared:
            self._graph = self._graph.copy()
            self._shared = False

    def _get(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise PlanError(f"no task with id {task_id!r}", ids=[str(task_id)]) from None

    def _check_dependencies(self, task: Task) -> None:
        for dep in task.dependencies:
            if dep == task.id:
                raise PlanError(f"task {task.id!r} cannot depend on itself", ids=[task.id])
            if dep not in self._tasks:
                raise PlanError(
                    f"task {task.id!r} depends on unknown task {dep!r}", ids=[task.id, dep]
                )

    def _find_cycle(self) -> list[str] | None:
        import networkx as nx

        if nx.is_directed_acyclic_graph(self._graph):
            return None
        return [u for u, _v in nx.find_cycle(self._graph)]

    def _free_id(self) -> str:
        n = len(self._tasks) + 1
        while f"task_{n}" in self._tasks:
            n += 1
        return f"task_{n}"

    def _changed(self, change: dict[str, Any]) -> None:
        self.version += 1
        self._derived = {}  # copies made before this edit keep theirs
        for callback in list(self._observers):
            callback(change)

    # --- display (drawing lives in _render; imported only when shown) ----------------

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._render import graph_mimebundle

        return graph_mimebundle(self)


def _resolve(entries: list[Entry]) -> list[Task]:
    """Give every entry a safe unique id and turn dependency references into ids."""
    resolver = EntryResolver()
    for entry in entries:
        resolver.add(entry)
    if resolver.problems:
        raise PlanError(_summarize(resolver.problems), ids=dict.fromkeys(resolver.bad))
    problems: list[str] = []
    bad: list[str] = []
    tasks: list[Task] = []
    for entry in entries:
        task, entry_problems, entry_bad = resolver.build(entry)
        problems.extend(entry_problems)
        bad.extend(entry_bad)
        if task is not None:
            tasks.append(task)
    if problems:
        raise PlanError(_summarize(problems), ids=dict.fromkeys(bad))
    return tasks


class EntryResolver:
    """Turns entries into Tasks: safe unique ids, and references resolved to those ids.

    ``from_plan`` adds every entry and then builds every task; the plan stream
    adds entries as they arrive and builds a task once what it refers to is
    known. References are found by id, then by name, then loosely (case and
    punctuation ignored), then as "task 3" / "#3"; a name shared by two tasks
    names neither.
    """

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}  # raw id -> safe id
        self.problems: list[str] = []  # duplicate ids
        self.bad: list[str] = []
        self._index: dict[str, int] = {}
        self._taken: set[str] = set()
        self._exact: dict[str, str] = {}
        self._names: dict[str, list[str]] = {}
        self._loose: dict[str, list[str]] = {}

    def add(self, entry: Entry) -> str | None:
        """Give the entry its id (None when another entry already has its raw id)."""
        if entry.raw_id in self._index:
            self.problems.append(
                f"duplicate task id {entry.raw_id!r} (entries {self._index[entry.raw_id] + 1} "
                f"and {entry.index + 1})"
            )
            self.bad.append(entry.raw_id)
            return None
        self._index[entry.raw_id] = entry.index
        base = safe_id(entry.raw_id)
        candidate, n = base, 2
        while candidate in self._taken:
            candidate, n = f"{base[:60]}_{n}", n + 1
        tid = self.ids[entry.raw_id] = candidate
        self._taken.add(tid)
        self._exact.setdefault(entry.raw_id, tid)
        self._exact.setdefault(tid, tid)
        self._names.setdefault(entry.name.casefold(), []).append(tid)
        for text in (entry.raw_id, entry.name):
            self._loose.setdefault(_loose(text), []).append(tid)
        return tid

    def find(self, ref: str) -> str | None:
        names = self._names.get(ref.casefold(), ())
        loose = set(self._loose.get(_loose(ref), ()))
        return (
            self._exact.get(ref)
            or (names[0] if len(names) == 1 else None)
            or (next(iter(loose)) if len(loose) == 1 else None)
            or self._numbered(ref)
        )

    def _numbered(self, ref: str) -> str | None:
        # "task 3" / "step 3" / "#3" meaning the task with id 3, or task_3 meaning id "3"
        match = re.fullmatch(r"(?:task|step|subtask)?[\s_#-]*(\d+)", ref.strip(), re.IGNORECASE)
        if not match:
            return None
        number = match.group(1)
        return self._exact.get(number) or self._exact.get(f"task_{number}")

    def build(self, entry: Entry) -> tuple[Task | None, list[str], list[str]]:
        """The entry's task, or the problems with its references (and the ids involved)."""
        tid = self.ids[entry.raw_id]
        problems: list[str] = []
        bad: list[str] = []
        deps: list[str] = []
        seen: set[str] = set()
        arguments, used = _argument_refs(entry.arguments, self.ids, self._taken)
        for ref in [*entry.dependencies, *used]:
            target = self.find(ref)
            if target is None:
                problems.append(f"task {tid!r} depends on unknown task {ref!r}")
                bad.extend((tid, ref))
            elif target == tid:
                problems.append(f"task {tid!r} depends on itself")
                bad.append(tid)
            elif target not in seen:  # once each, in order (a gather step names hundreds)
                seen.add(target)
                deps.append(target)
        if problems:
            return None, problems, bad
        task = Task(
            id=tid,
            name=entry.name if entry.name != entry.raw_id else tid,
            description=entry.description,
            dependencies=tuple(deps),
            estimated_time=entry.estimated_time,
            kind=entry.kind,
            function=entry.function,
            params=entry.params,
            priority=entry.priority,
            resources=entry.resources,
            retries=entry.retries,
            timeout=entry.timeout,
            approval=entry.approval,
            extra=entry.extra,
            arguments=arguments,
        )
        return task, [], []


def _argument_refs(
    arguments: Any, ids: Mapping[str, str], final_ids: set[str]
) -> tuple[Any, list[str]]:
    """Arguments with ``${raw id}`` rewritten to ``${id}``, and the ids they refer to.

    Only exact ids count as references: ``${HOME}`` in an argument stays text.
    """
    if not arguments:
        return arguments, []
    from ._plan_shapes import REF, map_strings, ref

    used: list[str] = []

    def rewrite(text: str) -> str:
        def swap(match: re.Match[str]) -> str:
            raw = match.group(1)
            target = ids.get(raw) or (raw if raw in final_ids else None)
            if target is None:
                return match.group(0)
            used.append(target)
            return ref(target)

        return REF.sub(swap, text) if "${" in text else text

    return map_strings(arguments, rewrite), used


def _arguments(value: Any, task_id: str) -> list[Any] | dict[str, Any]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str | int | float | bool):
        return [value]
    raise PlanError(
        f"task {task_id!r}: arguments must be a list or an object, not {type(value).__name__}",
        ids=[task_id],
    )


def _loose(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.casefold())


def _summarize(problems: list[str]) -> str:
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return unique[0]
    shown = "; ".join(unique[:5])
    more = f"; and {len(unique) - 5} more" if len(unique) > 5 else ""
    return f"the plan has {len(unique)} problems: {shown}{more}"
