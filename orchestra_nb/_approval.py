"""What a person sees before approving a task: the step, its prompt, its inputs, and why.

The terminal prompt of ``orchestra-nb run --approve`` and the notebook session
(for the widget's inspector) both show a task awaiting approval the same way,
from ``approval_request(run, task_id)``: its name, kind and description, the
prompt an LLM task will send (as the run would build it from the inputs it has
now), the Python function a python task calls, a short preview of each input,
and the reason it waits when it is not the plan's gate (a budget, say).
Everything here is text taken from LLM answers: callers escape it for their
display (the CLI's output filter, the widget's DOM text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ._actions import llm_messages, result_text
from ._errors import RunError
from ._text import shorten

if TYPE_CHECKING:
    from .engine import Run

INPUT_PREVIEW_CHARS = 300  # of each input shown


@dataclass(frozen=True)
class ApprovalRequest:
    """One task awaiting approval, as a person should see it before deciding."""

    task_id: str
    name: str
    kind: str
    description: str
    function: str | None = None
    prompt: str | None = None  # the step's part of an LLM task's prompt, inputs included
    inputs: dict[str, str] = field(default_factory=dict)  # dependency id -> a preview
    reason: str | None = None  # why it waits, when not its plan's or the run's gate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def approval_request(
    run: Run, task_id: str, *, input_chars: int = INPUT_PREVIEW_CHARS
) -> ApprovalRequest:
    """What ``task_id`` of ``run`` would do if approved; ``RunError`` for an unknown task."""
    task = run.graph.tasks.get(task_id)
    if task is None:
        raise RunError(f"no task {task_id!r} in run {run.id!r}")
    inputs = {dep: run.results[dep] for dep in task.dependencies if dep in run.results}
    prompt = None
    actions = run.actions
    if task.kind == "llm" and (actions is None or actions.runner is None):
        names = {tid: t.name for tid, t in run.graph.tasks.items()}
        messages = llm_messages(
            task, inputs, goal=run.graph.goal, names=names, input_budget=run.options.input_budget
        )
        prompt = messages[-1]["content"]
    reason = None
    for event in reversed(run.events):
        if event.task_id == task_id and event.kind == "awaiting_approval":
            reason = (event.data or {}).get("reason")
            break
    return ApprovalRequest(
        task_id=task.id,
        name=task.name,
        kind=task.kind,
        description=task.description,
        function=task.function if task.kind == "python" else None,
        prompt=prompt,
        inputs={dep: shorten(result_text(value), input_chars) for dep, value in inputs.items()},
        reason=str(reason) if reason else None,
    )
