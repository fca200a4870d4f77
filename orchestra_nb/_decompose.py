"""Goal -> TaskGraph: the planning prompt, structured output, and repair by re-prompting.

The model is asked for the seed plan format (with a JSON schema when the server
supports structured output). An answer the server reports as cut off by the
token limit (``finish_reason == "length"``) is not mended: the model is asked to
continue it, a bounded number of times. Streamed (``stream=True``), the answer
is read as the model writes it, continuations too, and a ``PlanWatcher`` hears
about each task as soon as it is whole (``plan_and_run`` starts them); the plan
that comes out is the one the whole answer gives. The whole answer then goes through the
tolerant parser and validation, in a worker thread so a large or hostile answer
never holds up the event loop; when that fails, the exact error goes back to
the model in a follow-up message, a bounded number of times. Nothing is
executed here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ._errors import PlanError
from ._json_text import MAX_ANSWER_CHARS, size_error
from ._plan import Task, TaskGraph

if TYPE_CHECKING:
    from ._plan_stream import PlanStream
    from .llm import LLM

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "subtasks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "dependencies": {"type": "array", "items": {"type": "string"}},
                    "estimated_time": {"type": ["number", "null"]},
                    "kind": {"type": "string", "enum": ["llm", "python", "report"]},
                    "function": {"type": ["string", "null"]},
                },
                "required": ["id", "name", "description", "dependencies", "estimated_time"],
            },
        }
    },
    "required": ["subtasks"],
}

PLANNING_PROMPT = """\
You plan work for a team of workers. Break the user's goal into {min_tasks} to {max_tasks} \
subtasks that together achieve it, with the dependencies between them.

Answer with JSON only, in exactly this shape:
{{"subtasks": [
  {{"id": "task_1", "name": "short name", "description": "what to do, specific enough \
for a worker who sees only this subtask and the results of its dependencies",
   "dependencies": [], "estimated_time": 10, "kind": "llm"}}
]}}

Rules:
- ids are "task_1", "task_2", ... ; "dependencies" lists the ids whose results a subtask needs.
- No cycles. Subtasks that do not need each other's results must not depend on each other, \
so they can run in parallel.
- "estimated_time" is in minutes.
- "kind" is "llm" for writing, research and analysis done by a language model{python_rule}; \
the last subtask compiles the final deliverable from the others and may use "report" to \
assemble their results verbatim into one document.
"""

CONTINUE_PROMPT = (
    "Your answer was cut off by the length limit. Continue it exactly where it stopped: "
    "write only the rest, starting with the next character, without repeating anything "
    "and without starting a new code block."
)
_ECHO_CHARS = 20_000  # how much of an unusable answer is shown back to the model

_PYTHON_RULE = (
    ', "python" for a step done by one of these Python functions (set "function" to its '
    "name):\n{functions}\n"
)


def planning_messages(
    goal: str,
    *,
    max_tasks: int = 12,
    min_tasks: int = 3,
    functions: Mapping[str, str] | None = None,
    context: str | None = None,
) -> list[dict[str, str]]:
    """The messages that ask a model for a plan (pure; useful for recording answers)."""
    python_rule = ""
    if functions:
        listed = "\n".join(f"  - {name}: {doc}" for name, doc in sorted(functions.items()))
        python_rule = _PYTHON_RULE.format(functions=listed)
    system = PLANNING_PROMPT.format(
        min_tasks=min(min_tasks, max_tasks), max_tasks=max_tasks, python_rule=python_rule
    )
    user = goal.strip()
    if context:
        user += "\n\nContext:\n" + context.strip()
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def decompose(
    goal: str,
    *,
    llm: LLM | str | None = None,
    max_attempts: int = 3,
    max_tasks: int = 12,
    min_tasks: int = 3,
    functions: Mapping[str, str] | Iterable[str] | None = None,
    context: str | None = None,
    max_continuations: int = 2,
    stream: bool = False,
) -> TaskGraph:
    """Ask an LLM to break ``goal`` into a validated TaskGraph.

    ``functions`` names Python functions (name -> one-line description) the plan
    may use for ``kind="python"`` steps. An answer cut off by the model's length
    limit is continued up to ``max_continuations`` times. An unusable answer is
    sent back with the validation error, up to ``max_attempts`` answers in all;
    then ``PlanError`` is raised carrying the last answer in ``.answer``.
    ``stream=True`` reads the answer while the model writes it (the same plan
    results; ``plan_and_run`` uses this to start tasks before the answer ends).
    """
    planner = Planner(
        goal,
        llm=llm,
        max_attempts=max_attempts,
        max_tasks=max_tasks,
        min_tasks=min_tasks,
        functions=functions,
        context=context,
        max_continuations=max_continuations,
    )
    return await planner.plan(stream=stream)


class PlanWatcher(Protocol):
    """Told about a plan while it streams in (``plan_and_run`` runs it with this)."""

    async def tasks(self, tasks: list[Task]) -> None:
        """Tasks complete in the answer so far, each after the tasks it depends on."""

    async def unusable(self, error: PlanError) -> None:
        """The answer the tasks came from cannot be used; the model is asked again."""

    async def accept(self, graph: TaskGraph) -> None:
        """The whole plan, validated; raise ``PlanError`` to have the model asked again."""


class Planner:
    """The conversation that turns one goal into a plan.

    Ask; read the answer whole or as it streams; ask the model to continue an
    answer the length limit cut; read and validate the plan off the loop; send an
    unusable one back with the reason. A ``PlanWatcher`` hears about tasks as
    soon as the streamed answer holds them whole, and about every answer that
    turns out unusable.
    """

    def __init__(
        self,
        goal: str,
        *,
        llm: LLM | str | None = None,
        max_attempts: int = 3,
        max_tasks: int = 12,
        min_tasks: int = 3,
        functions: Mapping[str, str] | Iterable[str] | None = None,
        context: str | None = None,
        max_continuations: int = 2,
    ) -> None:
        from .llm import llm_from_spec

        if not goal or not goal.strip():
            raise PlanError("the goal is empty: say what the plan should achieve")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if max_continuations < 0:
            raise ValueError("max_continuations must be 0 or more")
        self.goal = goal.strip()
        self.model = llm_from_spec(llm)
        self.max_attempts = max_attempts
        self.max_tasks = max_tasks
        self.max_continuations = max_continuations
        self.functions = describe_functions(functions)
        self.messages = planning_messages(
            goal, max_tasks=max_tasks, min_tasks=min_tasks, functions=self.functions,
            context=context,
        )  # fmt: skip

    async def plan(self, *, stream: bool = False, watcher: PlanWatcher | None = None) -> TaskGraph:
        """The validated plan (``PlanError`` after ``max_attempts`` unusable answers)."""
        messages = self.messages
        last_answer = ""
        last_error: PlanError | None = None
        for _attempt in range(self.max_attempts):
            reader = _StreamedPlan(self, watcher) if stream else None
            try:
                if reader is not None:
                    answer, complete, data = await reader.read(messages)
                else:
                    completion = await self.model.complete(messages, schema=PLAN_SCHEMA)
                    answer, complete = await _whole_answer(
                        self.model, messages, completion, self.max_continuations
                    )
                    data = completion.data
                last_answer = answer[:MAX_ANSWER_CHARS]
                if not complete:
                    raise PlanError(
                        f"the answer was still cut off by the length limit after "
                        f"{self.max_continuations} continuation(s): write fewer or shorter "
                        "subtasks"
                    )
                plan = answer if answer.strip() or not is_plan_data(data) else data
                graph = await asyncio.to_thread(_read_plan, plan, self.goal, self.max_tasks)
                check_functions(graph.tasks.values(), self.functions)
                if len(graph) > self.max_tasks:
                    raise PlanError(
                        f"the plan has {len(graph)} subtasks; use at most {self.max_tasks}"
                    )
                if reader is not None:
                    reader.check(graph)
                if watcher is not None:
                    await watcher.accept(graph)
                return graph
            except PlanError as exc:
                if reader is not None:
                    answer = reader.text
                    last_answer = answer[:MAX_ANSWER_CHARS]
                last_error = exc
                if watcher is not None:
                    await watcher.unusable(exc)
                messages = [
                    *messages,
                    {"role": "assistant", "content": echo_answer(answer)},
                    {
                        "role": "user",
                        "content": f"That plan cannot be used: {exc}. "
                        "Reply with the corrected plan as JSON only.",
                    },
                ]
        raise PlanError(
            f"no usable plan after {self.max_attempts} answer(s): {last_error}",
            ids=last_error.ids if last_error else (),
            answer=last_answer,
        )


class _StreamedPlan:
    """One answer read as it streams, continuations included, fed to a ``PlanStream``.

    Tasks go to the watcher as soon as they are whole (after the checks the
    finished plan would fail anyway: too many tasks, an unknown function), and a
    task read twice — a continuation that starts the answer over — must read the
    same both times.
    """

    def __init__(self, planner: Planner, watcher: PlanWatcher | None) -> None:
        self.planner = planner
        self.watcher = watcher
        self.text = ""  # the answer so far (continuations joined)
        self.handed: dict[str, Task] = {}  # tasks given to the watcher
        self._plan: PlanStream | None = None
        self._restart()

    def _restart(self) -> None:
        from ._plan_stream import PlanStream

        self._plan = PlanStream(goal=self.planner.goal)
        self.text = ""

    async def read(self, messages: list[dict[str, str]]) -> tuple[str, bool, Any]:
        """The whole answer, whether it is complete (not cut by the length limit), and
        the parsed JSON the client may have returned with it."""
        from .llm import stream_answer

        planner = self.planner
        async with stream_answer(planner.model, messages, schema=PLAN_SCHEMA) as answer:
            async for piece in answer:
                await self._feed(piece)
        first = answer.completion
        reason = first.finish_reason
        for _ in range(planner.max_continuations):
            if reason != "length" or len(self.text) > MAX_ANSWER_CHARS:
                break
            follow_up = [
                *messages,
                {"role": "assistant", "content": self.text},
                {"role": "user", "content": CONTINUE_PROMPT},
            ]
            joiner = ContinuationJoiner(self.text)
            async with stream_answer(planner.model, follow_up) as more:  # no schema: a rest
                async for piece in more:
                    await self._apply(joiner.feed(piece))
            await self._apply(joiner.finish())
            reason = more.completion.finish_reason
        return self.text, reason != "length", first.data

    async def _apply(self, joined: tuple[bool, str] | None) -> None:
        if joined is None:
            return
        restart, text = joined
        if restart:
            self._restart()
        if text:
            await self._feed(text)

    async def _feed(self, piece: str) -> None:
        assert self._plan is not None
        self.text += piece
        new = self._plan.feed(piece)
        if not new or self.watcher is None:
            return
        fresh = []
        for task in new:
            seen = self.handed.get(task.id)
            if seen is None:
                fresh.append(task)
            elif seen != task:
                raise PlanError(
                    f"task {task.id!r} was read while the plan streamed, but reads differently "
                    "in the continued answer",
                    ids=[task.id],
                )
        if not fresh:
            return
        planner = self.planner
        if len(self.handed) + len(fresh) > planner.max_tasks:
            raise PlanError(
                f"the plan has more than {planner.max_tasks} subtasks; "
                f"use at most {planner.max_tasks}"
            )
        check_functions(fresh, planner.functions)
        self.handed.update((t.id, t) for t in fresh)
        await self.watcher.tasks(fresh)

    def check(self, graph: TaskGraph) -> None:
        """The finished plan must hold every task handed out, as it was handed out."""
        for tid, task in self.handed.items():
            final = graph.tasks.get(tid)
            if final != task:
                what = "is missing from" if final is None else "reads differently in"
                raise PlanError(
                    f"task {tid!r} was read while the plan streamed, but {what} the finished "
                    "answer (a list after it changed it)",
                    ids=[tid],
                )


async def _whole_answer(
    model: LLM, messages: list[dict[str, str]], completion: Any, max_continuations: int
) -> tuple[str, bool]:
    """The answer with what a length cut-off left out asked for; and whether it is whole."""
    text = completion.text
    reason = completion.finish_reason
    for _ in range(max_continuations):
        if reason != "length" or len(text) > MAX_ANSWER_CHARS:
            break
        follow_up = [
            *messages,
            {"role": "assistant", "content": text},
            {"role": "user", "content": CONTINUE_PROMPT},
        ]
        more = await model.complete(follow_up)  # no schema: the rest is not a whole document
        text = join_continuation(text, more.text)
        reason = more.finish_reason
    return text, reason != "length"


def join_continuation(head: str, rest: str) -> str:
    """``head`` followed by the model's continuation of it.

    Models asked to continue sometimes open a new code fence, repeat the last
    words, or start over; each is recognised so the joined text reads as one answer.
    """
    body = rest
    stripped = body.lstrip()
    if stripped.startswith("```"):  # a new fence around the rest
        body = stripped.split("\n", 1)[1] if "\n" in stripped else ""
    start = head.lstrip()[:40]
    if len(start) >= 20 and body.lstrip().startswith(start):
        return body  # it started over
    for size in range(min(len(head), len(body), 200), 19, -1):
        if head.endswith(body[:size]):
            return head + body[size:]  # it repeated the last words first
    return head + body


class ContinuationJoiner:
    """``join_continuation`` for a continuation that arrives in pieces.

    The join is decided by the continuation's first line (a new code fence) and
    its first 200 characters after it (a repeat of the last words, or a fresh
    start), so pieces are held back only until those have arrived; after that each
    piece passes straight through. The joined text is always exactly what
    ``join_continuation(head, whole_continuation)`` gives.
    """

    _DECIDES = 200  # characters join_continuation looks at (after a fence line)

    def __init__(self, head: str) -> None:
        self.head = head
        self._held: list[str] = []
        self._decided = False

    def feed(self, piece: str) -> tuple[bool, str] | None:
        """None while undecided; then (starts over?, text to add after the answer so far)."""
        if self._decided:
            return False, piece
        self._held.append(piece)
        held = "".join(self._held)
        if not self._enough(held):
            return None
        return self._decide(held)

    def finish(self) -> tuple[bool, str] | None:
        """At the continuation's end: what is still held back, if anything."""
        if self._decided:
            return None
        return self._decide("".join(self._held))

    def _enough(self, held: str) -> bool:
        stripped = held.lstrip()
        if len(stripped) < 3:
            return False
        body = held
        if stripped.startswith("```"):
            if "\n" not in stripped:
                return False
            body = stripped.split("\n", 1)[1]
        return len(body.lstrip()) >= self._DECIDES

    def _decide(self, held: str) -> tuple[bool, str]:
        self._decided = True
        self._held = []
        joined = join_continuation(self.head, held)
        if joined.startswith(self.head):
            return False, joined[len(self.head) :]
        return True, joined


def _read_plan(answer: Any, goal: str, max_tasks: int) -> TaskGraph:
    if isinstance(answer, str) and len(answer) > MAX_ANSWER_CHARS:
        raise PlanError(
            str(size_error("the answer", len(answer), MAX_ANSWER_CHARS, "MAX_ANSWER_CHARS"))
        )
    return TaskGraph.from_plan(answer, goal=goal, max_tasks=max_tasks)


def echo_answer(answer: str) -> str:
    """An unusable answer as shown back to the model: bounded."""
    if len(answer) <= _ECHO_CHARS:
        return answer
    return answer[:_ECHO_CHARS] + f"\n…[{len(answer) - _ECHO_CHARS} more characters not shown]"


def is_plan_data(data: Any) -> bool:
    """Whether structured output holds something a plan could be read from."""
    return isinstance(data, dict | list) and bool(data)


def describe_functions(functions: Mapping[str, str] | Iterable[str] | None) -> dict[str, str]:
    """Function name -> its one-line summary, as a planning prompt offers them."""
    if functions is None:
        return {}
    if isinstance(functions, Mapping):
        return {str(k): " ".join(str(v).split()) for k, v in functions.items()}
    from ._actions import registered_functions

    known = registered_functions()
    out = {}
    for name in functions:
        entry = known.get(name)
        out[name] = entry.summary if entry else ""
    return out


def check_functions(tasks: Iterable[Task], functions: Mapping[str, str]) -> None:
    """``PlanError`` naming a python task whose function was not offered."""
    for task in tasks:
        tid = task.id
        if task.kind == "python" and (task.function or tid) not in functions:
            offered = ", ".join(sorted(functions)) or "none"
            raise PlanError(
                f"task {tid!r} uses Python function {task.function or tid!r}, "
                f"which does not exist (available: {offered})",
                ids=[tid],
            )
