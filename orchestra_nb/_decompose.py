"""Goal -> TaskGraph: the planning prompt, structured output, and repair by re-prompting.

The model is asked for the seed plan format (with a JSON schema when the server
supports structured output). An answer the server reports as cut off by the
token limit (``finish_reason == "length"``) is not mended: the model is asked to
continue it, a bounded number of times. The whole answer then goes through the
tolerant parser and validation, in a worker thread so a large or hostile answer
never holds up the event loop; when that fails, the exact error goes back to
the model in a follow-up message, a bounded number of times. Nothing is
executed here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import PlanError, ReplayMissError
from ._json_text import MAX_ANSWER_CHARS, size_error
from ._plan import TaskGraph

if TYPE_CHECKING:
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
) -> TaskGraph:
    """Ask an LLM to break ``goal`` into a validated TaskGraph.

    ``functions`` names Python functions (name -> one-line description) the plan
    may use for ``kind="python"`` steps. An answer cut off by the model's length
    limit is continued up to ``max_continuations`` times. An unusable answer is
    sent back with the validation error, up to ``max_attempts`` answers in all;
    then ``PlanError`` is raised carrying the last answer in ``.answer``.
    """
    from .llm import llm_from_spec

    if not goal or not goal.strip():
        raise PlanError("the goal is empty: say what the plan should achieve")
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    if max_continuations < 0:
        raise ValueError("max_continuations must be 0 or more")
    model = llm_from_spec(llm)
    described = describe_functions(functions)
    messages = planning_messages(
        goal, max_tasks=max_tasks, min_tasks=min_tasks, functions=described, context=context
    )
    last_answer = ""
    last_error: PlanError | None = None
    for _attempt in range(max_attempts):
        try:
            completion = await model.complete(messages, schema=PLAN_SCHEMA)
        except ReplayMissError as exc:
            raise _explain_miss(exc, described, getattr(model, "path", None)) from None
        answer, complete = await _whole_answer(model, messages, completion, max_continuations)
        last_answer = answer[:MAX_ANSWER_CHARS]
        try:
            if not complete:
                raise PlanError(
                    f"the answer was still cut off by the length limit after "
                    f"{max_continuations} continuation(s): write fewer or shorter subtasks"
                )
            plan = (
                answer if answer.strip() or not is_plan_data(completion.data) else completion.data
            )
            graph = await asyncio.to_thread(_read_plan, plan, goal.strip(), max_tasks)
            check_functions(graph, described)
            if len(graph) > max_tasks:
                raise PlanError(f"the plan has {len(graph)} subtasks; use at most {max_tasks}")
            return graph
        except PlanError as exc:
            last_error = exc
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
        f"no usable plan after {max_attempts} answer(s): {last_error}",
        ids=last_error.ids if last_error else (),
        answer=last_answer,
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


_LISTED_FUNCTION = re.compile(r"^\s*- ([A-Za-z_][\w.]*):", re.MULTILINE)


def functions_in_prompt(system: str) -> list[str]:
    """The Python functions a planning prompt offered the model (names, sorted)."""
    listed = system.partition('(set "function" to its name):')[2]
    return sorted(set(_LISTED_FUNCTION.findall(listed)))


def _explain_miss(
    exc: ReplayMissError, functions: Mapping[str, str], path: object
) -> ReplayMissError:
    """A replayed plan that misses only because other functions are registered says so."""
    system = [m["content"] for m in exc.recorded or () if m["role"] == "system"]
    if not system:
        return exc
    recorded = functions_in_prompt(system[0])
    if recorded == sorted(functions):
        return exc
    now = ", ".join(sorted(functions)) or "none"
    missing = [name for name in recorded if name not in functions]
    if missing == recorded:
        hint = "register them with @orchestra_nb.task_function"
    elif missing:
        hint = f"register {', '.join(missing)} with @orchestra_nb.task_function"
    else:
        hint = "register the same functions, no more"
    return ReplayMissError(
        f"no recorded plan for this goal with the Python functions registered now ({now}): "
        f"the recording{f' {path}' if path else ''} planned it with "
        f"{', '.join(recorded) or 'none'} registered; {hint}",
        recorded=exc.recorded,
    )


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


def check_functions(graph: TaskGraph, functions: Mapping[str, str]) -> None:
    """``PlanError`` naming a python task whose function was not offered."""
    for tid, task in graph.tasks.items():
        if task.kind == "python" and (task.function or tid) not in functions:
            offered = ", ".join(sorted(functions)) or "none"
            raise PlanError(
                f"task {tid!r} uses Python function {task.function or tid!r}, "
                f"which does not exist (available: {offered})",
                ids=[tid],
            )
