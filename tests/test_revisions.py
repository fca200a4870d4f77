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
            {"id": "table", "name": "Table", "kind": "python", "function": "table",
             "dependencies": ["data", "report"]},
            {"id": "report", "name": "Report", "kind": "report", "dependencies": ["table"]},
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
    assert '"chart"' in first_prompt and "- data (Collect data): [ 3, 1, 2 ]" in first_prompt
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


async def until(condition, what: str) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_run_replan_asks_for_a_revision_without_on_failure_replan():
    """The widget's Replan button: a run that skips failures can still be revised."""
    calls: list[str] = []
    release = asyncio.Event()

    async def runner(task, inputs):
        calls.append(task.id)
        if task.id == "side":
            await release.wait()  # keeps the run going after the failure
        if task.id == "chart":
            raise ValueError("the chart library is not installed")
        return task.id

    g = TaskGraph([Task("data"), Task("chart", dependencies=("data",)),
                   Task("report", dependencies=("chart",)), Task("side")])  # fmt: skip
    fixed = TaskGraph([Task("data"), Task("table", dependencies=("data",)),
                       Task("report", dependencies=("table",)), Task("side")])  # fmt: skip
    requests: list[RevisionRequest] = []

    async def replanner(request):
        requests.append(request)
        return fixed.copy()

    run = onb.start(g, runner=runner, store="memory://", replanner=replanner)
    await until(lambda: run.status["chart"] == "failed", "chart to fail")
    with pytest.raises(RunError, match="no task 'nope'"):
        run.replan("nope")
    run.replan("chart")
    with pytest.raises(RunError, match="already under way"):
        run.replan("chart")
    release.set()
    await run
    assert run.ok, run.status
    assert calls.count("data") == 1 and "table" in calls
    (request,) = requests
    assert "the chart library is not installed" in request.reason
    assert run.revisions[0].source == "replan" and run.revisions[0].outcome == "applied"
    with pytest.raises(RunError, match=r"run '[^']+' is not running$"):
        run.replan("chart")


async def test_a_task_approved_before_a_revision_is_not_asked_again_unless_it_changed():
    calls: list[str] = []
    release = asyncio.Event()

    async def runner(task, inputs):
        calls.append(task.id)
        if task.id == "slow":
            await release.wait()
        if task.id == "bad":
            raise ValueError("boom")
        return task.description or task.id

    g = TaskGraph([Task("slow"), Task("bad"), Task("gated", dependencies=("slow",))])
    kept = TaskGraph([Task("slow"), Task("good"), Task("gated", dependencies=("slow",))])

    async def replanner(request):
        return kept.copy()

    run = onb.start(
        g, runner=runner, store="memory://", on_failure="replan", replanner=replanner,
        approve=["gated"],
    )  # fmt: skip
    await until(lambda: run.status["bad"] == "failed", "bad to fail")
    release.set()  # slow ends while the revision waits: gated becomes ready, held
    await until(lambda: run.awaiting_approval == ["gated"], "gated to wait")
    run.approve("gated")  # approved while a revision is coming
    await until(lambda: run.proposed_revision is not None, "the proposal")
    await run.accept_revision()
    await run
    assert run.ok, run.status
    assert [e.kind for e in run.events if e.task_id == "gated"].count("awaiting_approval") == 1

    changed = TaskGraph([Task("slow"), Task("good"),
                         Task("gated", "Gated, revised", dependencies=("slow",))])  # fmt: skip

    async def changer(request):
        return changed.copy()

    release.clear()
    run = onb.start(
        g, runner=runner, store="memory://", on_failure="replan", replanner=changer,
        approve=["gated"],
    )  # fmt: skip
    await until(lambda: run.status["bad"] == "failed", "bad to fail")
    release.set()
    await until(lambda: run.awaiting_approval == ["gated"], "gated to wait")
    run.approve("gated")
    await until(lambda: run.proposed_revision is not None, "the proposal")
    await run.accept_revision()
    await until(lambda: run.awaiting_approval == ["gated"], "the changed task to ask again")
    run.approve("gated")
    await run
    assert run.ok


async def test_a_proposed_revision_nobody_accepts_times_out():
    async def replanner(request):
        return revised()

    events: list[onb.Event] = []
    run = await asyncio.wait_for(
        onb.run(
            plan(), functions=Functions(), store="memory://", on_failure="replan",
            replanner=replanner, approve=["report"], approval_timeout=0.2,
            on_event=events.append,
        ),
        10,
    )  # fmt: skip
    (revision,) = run.revisions
    assert revision.outcome == "rejected"
    assert revision.detail == "approval timed out after 0.2 s"
    assert run.status["chart"] == "failed" and run.status["report"] == "skipped"
    stages = [e.data["stage"] for e in events if e.kind == "revision"]
    assert stages == ["requested", "proposed", "rejected"]


async def test_a_failure_while_a_revision_awaits_a_person_is_replanned_after_it():
    requests: list[RevisionRequest] = []

    async def replanner(request):
        requests.append(request)
        return revised()

    g = plan()
    g.add_task(Task("extra", "Extra", kind="python", function="collect", approval=True))
    run = onb.start(
        g, functions=Functions(), store="memory://", on_failure="replan", replanner=replanner,
    )  # fmt: skip
    await until(lambda: run.proposed_revision is not None, "the first proposal")
    first = run.proposed_revision
    run.reject("extra", reason="not now")  # a second failure while the first is proposed
    assert run.proposed_revision is first  # it does not replace the proposal
    run.reject_revision("no")
    await until(lambda: len(requests) == 2, "the second request")
    assert "'extra'" in requests[1].reason and "not now" in requests[1].reason
    assert requests[1].failed["chart"] == "ValueError: the chart library is not installed"
    assert requests[1].failed["extra"] == "rejected: not now"
    await until(lambda: run.proposed_revision is not None, "the second proposal")
    run.reject_revision()
    await run
    assert [r.outcome for r in run.revisions] == ["rejected", "rejected"]


async def test_a_failure_seen_before_resume_is_not_replanned_again(tmp_path):
    url = f"sqlite:///{tmp_path}/seen.db"

    async def stubborn(request):
        return plan()

    first = await onb.run(
        plan(), functions=Functions(), store=url, on_failure="replan", replanner=stubborn,
        run_id="seen-1",
    )  # fmt: skip
    assert [r.outcome for r in first.revisions] == ["failed"]
    with LLMServer() as server:  # resume replans with an LLM: it must not be asked
        llm = onb.OpenAILLM("test-model", base_url=server.url, api_key="sk-test")
        again = await onb.resume("seen-1", functions=Functions(), llm=llm, store=url)
        assert server.requests == []
    assert again.status["chart"] == "failed"
    assert len(again.revisions) == 1


async def test_resume_after_a_revision_removed_a_task_left_waiting(tmp_path):
    url = f"sqlite:///{tmp_path}/removed.db"
    g = plan()
    g.add_task(Task("later", "Later", kind="python", function="collect", approval=True))

    async def drop_later(request):
        return revised()

    run = onb.start(
        g, functions=Functions(), store=url, on_failure="replan", replanner=drop_later,
        run_id="removed-1",
    )  # fmt: skip
    await until(lambda: run.proposed_revision is not None, "the proposal")
    await asyncio.sleep(0.4)  # "later" is recorded as awaiting approval
    await run.accept_revision()  # the revised plan has no "later"
    await run
    assert run.ok and "later" not in run.status
    again = await onb.resume("removed-1", functions=Functions(), store=url, on_failure="skip")
    assert set(again.status) == {"data", "table", "report"}
    assert set(again.status.values()) <= {"done", "cached"}


async def test_rollback_shows_a_finished_runs_revisions(tmp_path):
    url = f"sqlite:///{tmp_path}/roll.db"

    async def replanner(request):
        return revised()

    await onb.run(
        plan(), functions=Functions(), store=url, on_failure="replan", replanner=replanner,
        run_id="roll-1",
    )  # fmt: skip
    old = await onb.rollback("roll-1", store=url)
    (revision,) = old.revisions
    assert (revision.added, revision.removed, revision.changed) == (
        ("table",), ("chart",), ("report",),
    )  # fmt: skip
    assert revision.outcome == "applied" and "chart library" in revision.reason


async def test_revisions_survive_a_killed_process(tmp_path):
    import os
    import signal
    import sys

    from orchestra_nb.store import open_store
    from tests.support import revision_child

    url = f"sqlite:///{tmp_path}/killed.db"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.revision_child", url, "rev-kill", str(first_log),
        env=env,
    )  # fmt: skip
    store = open_store(url)
    try:
        for _ in range(1500):  # until the revision is in the header and "table" hangs
            record = await store.load_run("rev-kill")
            hanging = first_log.exists() and "table" in first_log.read_text().split()
            if record and record.header.get("revisions") and hanging:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the child never recorded its revision")
        child.send_signal(signal.SIGKILL)
        await child.wait()
    finally:
        await store.close()
    assert first_log.read_text().split() == ["data", "chart", "table"]

    resumed = await onb.resume(
        "rev-kill", functions=revision_child.functions(str(second_log)), store=url,
        on_failure="skip",
    )  # fmt: skip
    assert resumed.ok, resumed.errors
    assert list(resumed.graph.tasks) == ["data", "table", "report"]
    (revision,) = resumed.revisions
    assert (revision.added, revision.removed) == (("table",), ("chart",))
    assert second_log.read_text().split() == ["table"]  # data is not run again
    assert resumed.status["data"] == "cached"
    assert [r.added for r in (await onb.rollback("rev-kill", store=url)).revisions] == [("table",)]
