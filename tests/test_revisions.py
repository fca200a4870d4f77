"""Replanning: a failed task leads to a revised plan that the run continues with."""

from __future__ import annotations

import asyncio
import json

import pytest

import orchestra_nb as onb
from orchestra_nb import RunError, Task, TaskGraph
from orchestra_nb.engine import RevisionRequest
from tests.support.llm_server import LLMServer, Reply


def plan() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect data", kind="python", function="collect"),
            Task("chart", "Chart", kind="python", function="flaky_chart", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("chart",)),
        ],
        goal="a report",
    )


def revised() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect data", kind="python", function="collect"),
            Task("table", "Table", kind="python", function="table", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("table",)),
        ],
        goal="a report",
    )


class Functions(dict):
    """The tasks' functions, writing down every execution (their own side effect)."""

    def __init__(self):
        self.calls: list[str] = []

        def collect():
            self.calls.append("data")
            return [3, 1, 2]

        def flaky_chart(data):
            self.calls.append("chart")
            raise ValueError("the chart library is not installed")

        def table(data):
            self.calls.append("table")
            return "| n |\n" + "\n".join(f"| {n} |" for n in data)

        super().__init__(collect=collect, flaky_chart=flaky_chart, table=table)


async def test_a_failure_is_replanned_and_finished_work_is_not_repeated():
    functions = Functions()
    requests: list[RevisionRequest] = []

    async def replanner(request: RevisionRequest) -> TaskGraph:
        requests.append(request)
        return revised()

    events: list[onb.Event] = []
    run = await onb.run(
        plan(),
        functions=functions,
        store="memory://",
        on_failure="replan",
        replanner=replanner,
        on_event=events.append,
    )
    assert run.ok, run.errors
    assert functions.calls == ["data", "chart", "table"]  # data ran once
    (request,) = requests
    assert "the chart library is not installed" in request.reason
    assert request.failed == {"chart": "ValueError: the chart library is not installed"}
    assert list(request.finished) == ["data"]
    assert list(run.graph.tasks) == ["data", "table", "report"]
    assert run.status == {"data": "done", "table": "done", "report": "done"}
    (revision,) = run.revisions
    assert (revision.added, revision.removed, revision.changed) == (
        ("table",), ("chart",), ("report",),
    )  # fmt: skip
    assert revision.outcome == "applied"
    stages = [e.data["stage"] for e in events if e.kind == "revision"]
    assert stages == ["requested", "applied"]


async def test_replanning_is_bounded_and_never_loops_on_the_same_failure():
    functions = Functions()
    asked = 0

    async def stubborn(request: RevisionRequest) -> TaskGraph:
        nonlocal asked
        asked += 1
        return plan()  # the same plan: the same failure would come back

    run = await onb.run(
        plan(), functions=functions, store="memory://", on_failure="replan", replanner=stubborn
    )
    assert asked == 1
    assert run.revisions[0].outcome == "failed"
    assert run.revisions[0].detail == "the revised plan is unchanged"
    assert run.status["chart"] == "failed" and run.status["report"] == "skipped"

    async def renamer(request: RevisionRequest) -> TaskGraph:
        nonlocal asked
        asked += 1
        n = request.number
        return TaskGraph(
            [
                Task("data", "Collect data", kind="python", function="collect"),
                Task(f"chart{n}", f"Chart try {n}", kind="python", function="flaky_chart",
                     dependencies=("data",)),
            ]
        )  # fmt: skip

    asked = 0
    run = await onb.run(
        plan(),
        functions=Functions(),
        store="memory://",
        on_failure="replan",
        max_replans=2,
        replanner=renamer,
    )
    assert asked == 2  # max_replans, though every revision failed again
    assert [r.outcome for r in run.revisions] == ["applied", "applied"]
    assert run.status["chart2"] == "failed"


async def test_a_replanner_that_fails_leaves_the_failure_standing():
    async def broken(request: RevisionRequest) -> TaskGraph:
        raise onb.PlanError("no usable revised plan after 3 answer(s): cycle")

    run = await onb.run(
        plan(), functions=Functions(), store="memory://", on_failure="replan", replanner=broken
    )
    assert run.state == "failed"
    assert run.revisions[0].outcome == "failed"
    assert "cycle" in run.revisions[0].detail


async def test_with_approval_gates_a_person_accepts_or_rejects_the_revision():
    functions = Functions()

    async def replanner(request):
        return revised()

    run = onb.start(
        plan(),
        functions=functions,
        store="memory://",
        on_failure="replan",
        replanner=replanner,
        approve=["report"],
    )
    for _ in range(500):
        if run.proposed_revision is not None:
            break
        await asyncio.sleep(0.01)
    proposal = run.proposed_revision
    assert proposal is not None and proposal.added == ("table",)
    assert list(run.proposed_graph.tasks) == ["data", "table", "report"]
    assert "table" not in functions.calls  # nothing runs until a person decides
    await run.accept_revision()
    for _ in range(500):
        if run.awaiting_approval:
            break
        await asyncio.sleep(0.01)
    run.approve("report")
    await run
    assert run.ok and functions.calls == ["data", "chart", "table"]

    second = onb.start(
        plan(), functions=Functions(), store="memory://", on_failure="replan",
        replanner=replanner, approve=["report"],
    )  # fmt: skip
    for _ in range(500):
        if second.proposed_revision is not None:
            break
        await asyncio.sleep(0.01)
    second.reject_revision("not what I want")
    await second
    assert second.revisions[0].outcome == "rejected"
    assert second.status["chart"] == "failed"
    with pytest.raises(RunError, match="not running"):
        second.reject_revision()


async def test_revisions_survive_resume(tmp_path):
    url = f"sqlite:///{tmp_path}/rev.db"

    async def replanner(request):
        return revised()

    run = await onb.run(
        plan(), functions=Functions(), store=url, on_failure="replan", replanner=replanner,
        run_id="rev-1",
    )  # fmt: skip
    assert run.ok
    with pytest.raises(RunError, match="needs an LLM to replan with"):
        await onb.resume("rev-1", functions=Functions(), store=url)  # as recorded: replan
    again = await onb.resume("rev-1", functions=Functions(), store=url, on_failure="skip")
    assert list(again.graph.tasks) == ["data", "table", "report"]
    assert [r.added for r in again.revisions] == [("table",)]
    assert set(again.status.values()) <= {"done", "cached"}


async def test_replanning_with_a_real_llm_client_on_loopback():
    """A failing task -> a revision request that names the error -> a revised plan (the
    first answer has a cycle and is re-prompted) -> the run finishes."""
    functions = Functions()
    good = {"subtasks": [t.to_dict() for t in revised().tasks.values()]}
    cyclic = {
        "subtasks": [
            {"id": "data", "name": "Collect data", "kind": "python", "function": "collect",
             "dependencies": ["table"]},
            {"id": "table", "name": "Table", "kind": "python", "function": "table",
             "dependencies": ["data"]},
        ]
    }  # fmt: skip
    with LLMServer() as server:
        server.script(Reply(content=json.dumps(cyclic)), Reply(content=json.dumps(good)))
        llm = onb.OpenAILLM("test-model", base_url=server.url, api_key="sk-test")
        run = await onb.run(
            plan(), functions=functions, llm=llm, store="memory://", on_failure="replan"
        )
        asked = [r for r in server.requests if "response_format" in r]
    assert run.ok, run.errors
    assert functions.calls == ["data", "chart", "table"]
    assert len(asked) == 2
    first_prompt = asked[0]["messages"][-1]["content"]
    assert "the chart library is not installed" in first_prompt
    assert '"chart"' in first_prompt and "Finished steps" in first_prompt
    assert "cycle" in asked[1]["messages"][-1]["content"]  # the re-prompt names the defect


async def test_on_failure_replan_needs_an_llm():
    with pytest.raises(RunError, match="on_failure='replan' needs an LLM"):
        onb.start(plan(), functions=Functions(), store="memory://", on_failure="replan")
    with pytest.raises(RunError, match="on_failure must be 'skip' or 'replan'"):
        onb.start(plan(), functions=Functions(), store="memory://", on_failure="retry")


async def test_a_replan_can_be_asked_for_without_on_failure_replan():
    async def replanner(request):
        return TaskGraph([*revised().tasks.values(), Task("side", "Side", kind="report")])

    functions = Functions()
    graph = TaskGraph(
        [*plan().tasks.values(), Task("side", "Side", kind="report")]
    )  # keeps the run going
    run = onb.start(
        graph, functions=functions, store="memory://", replanner=replanner, approve=["side"]
    )
    for _ in range(500):
        if run.status["chart"] == "failed":
            break
        await asyncio.sleep(0.01)
    assert run.revisions == []  # on_failure="skip": nothing automatic
    run.replan("chart")  # the widget's Replan button, while the run still goes
    for _ in range(500):
        if run.proposed_revision is not None:
            break
        await asyncio.sleep(0.01)
    assert run.proposed_revision.added == ("table",)
    await run.accept_revision()
    for _ in range(500):
        if run.status.get("report") == "done":
            break
        await asyncio.sleep(0.01)
    run.reject("side", "not needed")
    await run
    assert functions.calls == ["data", "chart", "table"]
    assert run.status["report"] == "done" and run.status["side"] == "skipped"
