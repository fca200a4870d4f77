"""A failed run -> a revised TaskGraph: the replanning prompt and its repair loop.

The model sees the goal, the current plan, short summaries of what finished and
the error, and answers with the whole revised plan in the same JSON format as
a first plan. The answer is parsed and validated like any plan (cycles refused,
the error sent back for a corrected answer, a bounded number of times). Tasks
the model keeps unchanged keep their cached results: the engine reuses every
result whose cache key has not changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ._decompose import PLAN_SCHEMA, _check_functions, _describe_functions, _is_plan
from ._errors import PlanError
from ._plan import TaskGraph

if TYPE_CHECKING:
    from .engine import RevisionRequest
    from .llm import LLM

REPLANNING_PROMPT = """\
You revise a plan that a team of workers is executing. One step went wrong. Answer with \
the complete revised plan as JSON only, in the same shape as the current plan: \
{{"subtasks": [{{"id", "name", "description", "dependencies", "estimated_time", "kind"}}]}}.

Rules:
- Keep every finished step exactly as it is (same id, name, description, kind, function \
and dependencies): its result is reused only if nothing about it changes.
- Change, replace or remove the step that went wrong and whatever depends on it, so that \
the plan can still reach the goal. Do not repeat a step that will fail the same way.
- New steps get new ids. No cycles; steps that do not need each other's results must not \
depend on each other.
- "kind" is "llm" for writing, research and analysis{python_rule}; "report" assembles \
its inputs verbatim.
"""


def replanning_messages(
    request: RevisionRequest, *, functions: Mapping[str, str] | None = None
) -> list[dict[str, str]]:
    """The messages that ask a model for a revised plan (pure)."""
    python_rule = ""
    if functions:
        listed = "; ".join(f'"{name}" ({doc})' for name, doc in sorted(functions.items()))
        python_rule = f', "python" for one of these functions (set "function"): {listed}'
    finished = "\n".join(f"- {tid}: {summary}" for tid, summary in request.finished.items())
    failed = "\n".join(f"- {tid}: {error}" for tid, error in request.failed.items())
    user = [
        f"Goal: {request.goal or '(none given)'}",
        "Current plan:\n" + json.dumps(request.graph.to_plan(), ensure_ascii=False, indent=1),
        "Finished steps and a summary of their results:\n" + (finished or "- none"),
        "Failed steps:\n" + (failed or "- none"),
        f"What went wrong: {request.reason}",
        "Reply with the complete revised plan.",
    ]
    return [
        {"role": "system", "content": REPLANNING_PROMPT.format(python_rule=python_rule)},
        {"role": "user", "content": "\n\n".join(user)},
    ]


async def replan(
    request: RevisionRequest,
    *,
    llm: LLM | str | None = None,
    max_attempts: int = 3,
    functions: Mapping[str, str] | None = None,
) -> TaskGraph:
    """Ask an LLM for a revised plan; ``PlanError`` when no usable one comes back."""
    from .llm import llm_from_spec

    model = llm_from_spec(llm)
    described = _describe_functions(functions)
    messages = replanning_messages(request, functions=described)
    last_error: PlanError | None = None
    last_answer = ""
    for _attempt in range(max_attempts):
        completion = await model.complete(messages, schema=PLAN_SCHEMA)
        last_answer = completion.text
        try:
            plan = completion.data if _is_plan(completion.data) else completion.text
            graph = TaskGraph.from_plan(plan, goal=request.goal)
            _check_functions(graph.tasks.values(), described)
            return graph
        except PlanError as exc:
            last_error = exc
            messages = [
                *messages,
                {"role": "assistant", "content": completion.text},
                {
                    "role": "user",
                    "content": f"That plan cannot be used: {exc}. "
                    "Reply with the corrected revised plan as JSON only.",
                },
            ]
    raise PlanError(
        f"no usable revised plan after {max_attempts} answer(s): {last_error}",
        ids=last_error.ids if last_error else (),
        answer=last_answer,
    )
