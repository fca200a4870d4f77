"""A failed run -> a revised TaskGraph: the replanning prompt and its repair loop.

The model sees the goal, the current plan, which steps finished (with a short
summary of each result), which failed and why, and which have not started; it
answers with the steps that still have to run, in the same JSON format as a
first plan. Finished steps are not the model's to change: they are kept as they
are (so their cached results are reused — content keys), and a step of the
answer that repeats a finished id is left out. The rest of the answer replaces
the unfinished part of the plan; a new step may depend on finished ones::

    finished steps (kept) + the answer's steps ─► TaskGraph.from_plan ─► check
                                                           │ PlanError
                                                           └─► re-prompt with the error

The merged plan is validated like any plan (cycles refused, unknown
dependencies named) and the error sent back for a corrected answer, a bounded
number of times. Parsing runs off the event loop, as for a first plan.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ._decompose import (
    PLAN_SCHEMA,
    check_functions,
    describe_functions,
    echo_answer,
    is_plan_data,
)
from ._errors import PlanError
from ._json_text import MAX_ANSWER_CHARS, size_error
from ._parse import read_plan
from ._plan import TaskGraph

if TYPE_CHECKING:
    from ._parse import Entry
    from .engine import RevisionRequest
    from .llm import LLM

REPLANNING_PROMPT = """\
You repair a plan while a team of workers carries it out. Some steps have finished; a step \
went wrong. Write the rest of the plan: the steps that still have to run to reach the goal. \
Answer with JSON only: {{"subtasks": [{{"id", "name", "description", "dependencies", \
"estimated_time", "kind"}}]}}.

Rules:
- Finished steps are kept with their results: do not list them. A step may depend on a \
finished step by its id.
- Do not repeat what went wrong: take another approach for that step, replace it, or leave \
it out and change the steps that needed it.
- Keep every unfinished step that is still right exactly as it is (same id and fields). A \
step you change keeps its id; a new step gets a new id.
- No cycles; steps that do not need each other's results must not depend on each other.
- "kind" is "llm" for writing, research and analysis{python_rule}; "report" assembles \
its inputs verbatim.
"""


def replanning_messages(
    request: RevisionRequest, *, functions: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """The messages that ask a model for the rest of a plan (pure)."""
    python_rule = ""
    if functions:
        listed = "; ".join(f'"{name}" ({doc})' for name, doc in sorted(functions.items()))
        python_rule = f', "python" for one of these functions (set "function"): {listed}'
    tasks = request.graph.tasks
    finished = "\n".join(
        f"- {tid} ({tasks[tid].name}): {summary}"
        for tid, summary in request.finished.items()
        if tid in tasks
    )
    failed = "\n".join(
        f"- {tid} ({tasks[tid].name}): {error}"
        for tid, error in request.failed.items()
        if tid in tasks
    )
    waiting = [tid for tid in tasks if tid not in request.finished and tid not in request.failed]
    user = [
        f"Goal: {request.goal or '(none given)'}",
        "Current plan:\n" + json.dumps(request.graph.to_plan(), ensure_ascii=False, indent=1),
        "Finished (kept as they are), with a summary of each result:\n" + (finished or "- none"),
        "Failed:\n" + (failed or "- none"),
        "Not started: " + (", ".join(waiting) or "none"),
        f"What went wrong: {request.reason}",
        "Reply with the steps that still have to run, as JSON.",
    ]
    return [
        {"role": "system", "content": REPLANNING_PROMPT.format(python_rule=python_rule)},
        {"role": "user", "content": "\n\n".join(user)},
    ]


def merge_revision(request: RevisionRequest, answer: Any) -> TaskGraph:
    """The revised plan: the finished steps of ``request.graph`` as they are, then the
    answer's steps (those repeating a finished id left out). ``PlanError`` when the
    answer cannot be read or the merged plan is not valid."""
    if isinstance(answer, str) and len(answer) > MAX_ANSWER_CHARS:
        raise PlanError(
            str(size_error("the answer", len(answer), MAX_ANSWER_CHARS, "MAX_ANSWER_CHARS"))
        )
    tasks = request.graph.tasks
    kept = [tasks[tid].to_dict() for tid in tasks if tid in request.finished]
    finished = {t["id"] for t in kept}
    raw = read_plan(answer)
    steps = [_entry_dict(e) for e in raw.entries if e.raw_id not in finished]
    if not steps:
        raise PlanError("the answer has no step still to run (finished steps are kept already)")
    return TaskGraph.from_plan({"subtasks": kept + steps}, goal=request.goal)


def _entry_dict(entry: Entry) -> dict[str, Any]:
    """A step read from the answer, in the seed format again (read once more with the
    finished steps, so it may name them by id or by name)."""
    out: dict[str, Any] = dict(entry.extra)
    out.update(
        id=entry.raw_id,
        name=entry.name,
        description=entry.description,
        dependencies=list(entry.dependencies),
        estimated_time=entry.estimated_time,
        kind=entry.kind,
    )
    optional = {
        "function": entry.function,
        "params": entry.params,
        "priority": entry.priority,
        "resources": entry.resources,
        "retries": entry.retries,
        "timeout": entry.timeout,
        "approval": entry.approval,
        "arguments": entry.arguments,
    }
    out.update({k: v for k, v in optional.items() if v not in (None, {}, [], False)})
    return out


async def replan(
    request: RevisionRequest,
    *,
    llm: LLM | str | None = None,
    max_attempts: int = 3,
    functions: Mapping[str, str] | None = None,
) -> TaskGraph:
    """Ask an LLM for the rest of a plan that went wrong; the revised plan (finished steps
    kept), or ``PlanError`` when no usable one comes back in ``max_attempts`` answers."""
    from .llm import llm_from_spec

    model = llm_from_spec(llm)
    described = describe_functions(functions)
    messages = replanning_messages(request, functions=described)
    last_error: PlanError | None = None
    last_answer = ""
    for _attempt in range(max_attempts):
        completion = await model.complete(messages, schema=PLAN_SCHEMA)
        answer = completion.text
        last_answer = answer[:MAX_ANSWER_CHARS]
        try:
            plan = (
                answer if answer.strip() or not is_plan_data(completion.data) else completion.data
            )
            graph = await asyncio.to_thread(merge_revision, request, plan)
            if described:
                check_functions(graph.tasks.values(), described)
            return graph
        except PlanError as exc:
            last_error = exc
            messages = [
                *messages,
                {"role": "assistant", "content": echo_answer(answer)},
                {
                    "role": "user",
                    "content": f"That cannot be used: {exc}. "
                    "Reply with the corrected steps as JSON only.",
                },
            ]
    raise PlanError(
        f"no usable revised plan after {max_attempts} answer(s): {last_error}",
        ids=last_error.ids if last_error else (),
        answer=last_answer,
    )
