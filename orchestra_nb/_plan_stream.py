"""Reading a plan while the model is still writing it.

``PlanStream`` is fed the answer chunk by chunk as a model streams it. Each
``feed`` returns the tasks that became complete with that chunk, once every
task they depend on has been returned before them, so a caller may start a
task the moment it is returned. ``close()`` returns exactly the ``TaskGraph``
that ``TaskGraph.from_plan`` gives for the whole answer (or raises the same
``PlanError``), and refuses an answer whose finished form contradicts a task
already returned::

    stream = PlanStream(goal=goal)
    async for chunk in answer:
        for task in stream.feed(chunk):
            start(task)              # its dependencies were returned earlier
    graph = stream.close()

When a task counts as complete:

- in a task list (``{"subtasks": [...]}`` and the other list keys except
  ``nodes``), a top-level list, task objects written one after another, and
  LLMCompiler text plans: as soon as its closing brace (or its line) arrives;
- in node/edge graphs, TaskBench answers and id -> task mappings: when the
  whole plan object closes, since their dependencies come in a later list.

A task that refers to a task not seen yet waits for it. Every character is
scanned once and every task read once, so streaming a plan costs what reading
it whole does (plus one final read to check it); see ``JSONScanner``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._errors import PlanError
from ._json_text import MAX_ANSWER_CHARS, JSONScanner, LimitExceeded, size_error
from ._parse import (
    EDGE_KEYS,
    PLAN_KEYS,
    Entry,
    is_plan_container,
    is_task_object,
    read_entry,
    read_plan_value,
)
from ._plan import EntryResolver, Task, TaskGraph
from ._plan_shapes import TextPlanReader, text_plan_sign

_STREAMED_KEYS = frozenset(PLAN_KEYS) - {"nodes"}  # lists whose tasks carry their own deps
# a partial line that may still turn into "12. tool(" (so the mode is not known yet)
_MAY_BE_STEP = re.compile(r"[ \t]*(?:\d+[ \t]*(?:\.[ \t]*(?:[A-Za-z_][\w.-]*[ \t]*)?)?)?")


class PlanStream:
    """An incremental plan reader: ``feed(chunk) -> new tasks``, ``close() -> TaskGraph``."""

    def __init__(self, *, goal: str | None = None, max_chars: int = MAX_ANSWER_CHARS) -> None:
        self.goal = goal
        self.max_chars = max_chars
        self._chunks: list[str] = []
        self._size = 0
        self._mode: str | None = None  # "json" or "text" once the answer shows which
        self._line = ""  # the unfinished last line, while it may still become a step
        self._line_may_be_step = True
        self._parts: list[str] = []  # the unfinished last line of a text plan, in pieces
        self._scanner = JSONScanner(max_chars=max_chars, on_close=self._closed)
        self._text = TextPlanReader()
        self._resolver = EntryResolver()
        self._pending: list[Entry] = []
        self._emitted: dict[str, Task] = {}
        self._new: list[Task] = []
        self._top_tasks = 0  # task objects written at the top level, one after another
        self._streamed_tops: set[int] = set()  # top-level values whose tasks came one by one
        self._graph: TaskGraph | None = None

    @property
    def tasks(self) -> list[Task]:
        """The tasks returned so far, in the order they were returned."""
        return list(self._emitted.values())

    def feed(self, chunk: str) -> list[Task]:
        """Read the next piece of the answer; the tasks it completed (dependencies first)."""
        if self._graph is not None:
            raise RuntimeError("the plan stream is closed")
        self._size += len(chunk)
        if self._size > self.max_chars:
            raise PlanError(str(size_error("the answer", self._size, self.max_chars, "max_chars")))
        self._chunks.append(chunk)
        try:
            if self._mode is None:
                self._decide(chunk)
            elif self._mode == "json":
                self._scanner.feed(chunk)
            else:
                self._read_lines(chunk)
        except LimitExceeded as exc:
            raise PlanError(str(exc)) from None
        new, self._new = self._new, []
        return new

    def close(self) -> TaskGraph:
        """The finished plan, read whole and checked against what was already returned."""
        if self._graph is not None:
            return self._graph
        graph = TaskGraph.from_plan("".join(self._chunks), goal=self.goal)
        for tid, task in self._emitted.items():
            final = graph.tasks.get(tid)
            if final != task:
                what = "is missing from" if final is None else "reads differently in"
                raise PlanError(
                    f"task {tid!r} was read while the plan streamed, but {what} the finished "
                    "answer (a list after it changed it)",
                    ids=[tid],
                )
        self._graph = graph
        return graph

    # --- which kind of plan ------------------------------------------------------------

    def _decide(self, chunk: str) -> None:
        pieces = chunk.split("\n")
        for k, piece in enumerate(pieces):
            line = self._line + piece
            if self._line_may_be_step:
                sign = text_plan_sign(line)
            else:
                sign = False if ("{" in piece or "[" in piece) else None
            if sign is not None:
                self._mode = "text" if sign else "json"
                self._line = ""
                everything = "".join(self._chunks)
                if sign:
                    self._read_lines(everything)
                else:
                    self._scanner.feed(everything)
                return
            if k < len(pieces) - 1:  # the line ended without a sign
                self._line, self._line_may_be_step = "", True
            elif self._line_may_be_step:
                self._line_may_be_step = bool(_MAY_BE_STEP.fullmatch(line))
                self._line = line if self._line_may_be_step else ""  # only a short prefix

    # --- text plans ----------------------------------------------------------------------

    def _read_lines(self, text: str) -> None:
        lines = text.split("\n")
        if len(lines) == 1:
            self._parts.append(text)  # joined once its line ends: no copying per chunk
            return
        lines[0] = "".join([*self._parts, lines[0]])
        self._parts = [lines.pop()]
        for line in lines:
            entry = self._text.line(line)
            if entry is not None:
                self._add(entry)

    # --- JSON plans ----------------------------------------------------------------------

    def _closed(self, path: tuple[Any, ...], value: Any, parents: tuple[Any, ...]) -> None:
        if not parents:
            self._top_closed(path[0], value)
            return
        if not isinstance(value, Mapping) or not isinstance(parents[-1], list):
            return
        root = parents[0]
        if isinstance(root, list):
            if len(path) != 2:
                return
        elif not (
            isinstance(root, Mapping)
            and "task_nodes" not in root
            and not any(key in root for key in EDGE_KEYS)
            and all(isinstance(p, Mapping) for p in parents[:-1])
            and all(key in _STREAMED_KEYS for key in path[1:-1])
        ):
            return
        self._streamed_tops.add(path[0])
        try:
            entry = read_entry(path[-1], value)
        except PlanError:
            return  # the finished answer is refused with this error
        self._add(entry)

    def _top_closed(self, index: int, value: Any) -> None:
        if is_plan_container(value):
            if index in self._streamed_tops:
                return
            try:
                entries = read_plan_value(value).entries
            except PlanError:
                return
            for entry in entries:
                self._add(entry)
        elif is_task_object(value):
            position, self._top_tasks = self._top_tasks, self._top_tasks + 1
            try:
                entry = read_entry(position, value)
            except PlanError:
                return
            self._add(entry)

    # --- handing tasks out -----------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        if self._resolver.add(entry) is None:
            return  # a duplicate id: the finished answer is refused
        self._pending.append(entry)
        progress = True
        while progress:
            progress = False
            for entry in list(self._pending):
                task, _problems, _bad = self._resolver.build(entry)
                if task is None or any(d not in self._emitted for d in task.dependencies):
                    continue  # waits for a task not read (or not returned) yet
                self._pending.remove(entry)
                self._emitted[task.id] = task
                self._new.append(task)
                progress = True
