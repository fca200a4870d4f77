"""The notebook session (``Orchestration``) from Python: stale marking and retries."""

from __future__ import annotations

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph
from orchestra_nb._actions import graph_cache_keys
from orchestra_nb.jupyter._session import Orchestration


def plan() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Load", kind="python", function="load_v"),
            Task("chart", "Chart", kind="python", function="chart_v", dependencies=("data",)),
            Task("side", "Side", kind="python", function="side_v"),
        ],
        goal="g",
    )


def load_v():
    return [1, 2]


def side_v():
    return "side"


async def test_stale_ids_agree_with_the_next_runs_keys_when_a_function_changes(tmp_path):
    def chart_v(data):
        return sum(data)

    functions = {"load_v": load_v, "chart_v": chart_v, "side_v": side_v}
    store = f"sqlite:///{tmp_path}/r.db"
    session = Orchestration("s", store=store, options={"functions": functions})
    session.set_graph(plan())
    first = await session.start()
    assert first.ok
    assert session.stale_ids() == set()

    def load_v2():  # the user edits the function the first task calls
        return [1, 2, 3]

    functions["load_v"] = load_v2
    stale = session.stale_ids()
    assert stale == {"data", "chart"}
    # exactly the tasks whose keys the next run computes differently
    nxt = graph_cache_keys(session.graph, functions=functions)
    assert stale == {tid for tid, key in nxt.items() if first.keys[tid] != key}
    second = await session.start()
    assert {tid for tid, s in second.status.items() if s == "done"} == stale
    assert second.status["side"] == "cached"


async def test_stale_ids_follow_registered_functions(tmp_path):
    @onb.task_function(name="reg_f", version="1")
    def reg_f():
        return 1

    graph = TaskGraph(
        [
            Task("a", kind="python", function="reg_f"),
            Task("b", "B", kind="python", function="side_v", dependencies=("a",)),
            Task("c", "C", kind="python", function="side_v"),
        ]
    )
    session = Orchestration("r", store=f"sqlite:///{tmp_path}/r.db", options={
        "functions": {"side_v": side_v}})  # fmt: skip
    session.set_graph(graph)
    assert (await session.start()).ok
    assert session.stale_ids() == set()

    @onb.task_function(name="reg_f", version="2")
    def reg_f_again():
        return 2

    assert session.stale_ids() == {"a", "b"}


async def test_retry_failed_retries_only_the_tasks_it_is_given(tmp_path):
    calls: list[str] = []
    failing = {"b", "x"}

    def step(task):
        calls.append(task.id)
        if task.id in failing:
            raise ValueError(f"{task.id} broke")
        return task.id

    graph = TaskGraph(
        [
            Task("a", kind="python", function="step"),
            Task("b", kind="python", function="step", dependencies=("a",)),
            Task("x", kind="python", function="step"),
        ]
    )
    session = Orchestration(
        "t", store=f"sqlite:///{tmp_path}/t.db", options={"functions": {"step": step}}
    )
    session.set_graph(graph)
    first = await session.start()
    assert first.status == {"a": "done", "b": "failed", "x": "failed"}
    failing.clear()
    calls.clear()
    retried = await session.retry_failed(["b"])
    assert calls == ["b"]
    assert retried.status == {"a": "cached", "b": "done", "x": "skipped"}
    calls.clear()
    everything = await session.retry_failed()
    assert calls == ["x"]
    assert everything.ok


# --- a person in the loop, through the session (what the widget's controls call) ------------


async def until(condition, what: str) -> None:
    import asyncio

    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Steps(dict):
    """Python steps that write down each execution; ``chart`` fails until fixed."""

    def __init__(self):
        self.calls: list[str] = []

        def collect():
            self.calls.append("data")
            return [3, 1, 2]

        def chart(data):
            self.calls.append("chart")
            raise ValueError("the chart library is not installed")

        def table(data):
            self.calls.append("table")
            return f"table of {len(data)}"

        def survey(task):
            self.calls.append(task.id)
            return task.description

        super().__init__(collect=collect, chart=chart, table=table, survey=survey)


def research() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect", kind="python", function="collect"),
            Task("chart", "Chart", kind="python", function="chart", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("chart",)),
        ],
        goal="a report",
    )


def repaired() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect", kind="python", function="collect"),
            Task("table", "Table", kind="python", function="table", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("table",)),
        ],
        goal="a report",
    )


async def test_the_session_approves_rejects_and_edits_a_waiting_task(tmp_path):
    steps = Steps()
    graph = TaskGraph(
        [
            Task("data", "Collect", kind="python", function="collect"),
            Task("survey", "Survey", "ask 5,000 people", kind="python", function="survey",
                 dependencies=("data",)),
            Task("extra", "Extra", "more", kind="python", function="survey"),
            Task("report", "Report", kind="report", dependencies=("survey",)),
        ]
    )  # fmt: skip
    session = Orchestration(
        "h", store=f"sqlite:///{tmp_path}/h.db",
        options={"functions": steps, "approve": ["survey", "extra"]},
    )  # fmt: skip
    session.set_graph(graph)
    import pytest

    with pytest.raises(onb.RunError, match="'h' has not run yet"):
        session.approve("survey")
    run = session.start()
    await until(lambda: session.awaiting_approval == ["survey", "extra"], "both to wait")
    request = session.approval_request("survey")
    assert (request.description, request.function) == ("ask 5,000 people", "survey")
    assert request.inputs == {"data": "[ 3, 1, 2 ]"} and request.prompt is None
    session.reject("extra", reason="not this time")
    session.edit_then_approve("survey", description="ask 50 people")
    await run
    assert run.results["survey"] == "ask 50 people"
    assert run.status["extra"] == "skipped" and run.errors["extra"] == "rejected: not this time"
    assert [r.source for r in session.revisions] == ["edit"]
    await until(lambda: session.graph.tasks["survey"].description == "ask 50 people", "the plan")
    assert session.widget.graph is session.graph  # the widget shows the edited plan
    with pytest.raises(onb.RunError, match=r"run \S+ of 'h' has ended \(failed\)"):
        session.approve("survey")


async def test_the_session_replans_in_the_run_and_a_person_accepts(tmp_path):
    steps = Steps()

    async def replanner(request):
        return repaired()

    session = Orchestration(
        "p", store=f"sqlite:///{tmp_path}/p.db",
        options={"functions": steps, "replanner": replanner, "on_failure": "replan",
                 "approve": ["report"]},
    )  # fmt: skip
    session.set_graph(research())
    run = session.start()
    await until(lambda: session.proposed_revision is not None, "the proposal")
    assert session.proposed_revision.added == ("table",)
    assert list(session.proposed_graph.tasks) == ["data", "table", "report"]
    await session.accept_revision()
    await until(lambda: session.awaiting_approval == ["report"], "the gated report")
    session.approve("report")
    await run
    assert run.ok and steps.calls == ["data", "chart", "table"]
    await until(lambda: "table" in session.graph, "the session's plan to follow the run")
    assert session.report == "table of 3" or "table of 3" in str(session.report)


async def test_the_session_replans_a_run_that_has_ended(tmp_path):
    steps = Steps()
    requests = []

    async def replanner(request):
        requests.append(request)
        return repaired()

    session = Orchestration(
        "e", store=f"sqlite:///{tmp_path}/e.db",
        options={"functions": steps, "replanner": replanner},
    )  # fmt: skip
    session.set_graph(research())
    first = await session.start()
    assert first.status == {"data": "done", "chart": "failed", "report": "skipped"}
    session.replan("chart")  # the Replan button on the failed task, after the run ended
    continued = await session
    assert continued is session.run and continued.id == first.id  # the same run goes on
    assert continued.ok, continued.status
    assert steps.calls == ["data", "chart", "table"]  # data came from the store
    assert continued.status["data"] in ("cached", "done")
    (request,) = requests
    assert "the chart library is not installed" in request.reason
    (revision,) = continued.revisions
    assert (revision.added, revision.removed) == (("table",), ("chart",))
    import pytest

    with pytest.raises(onb.RunError, match="no task 'zz'"):
        session.replan("zz")


async def test_rejecting_a_proposed_revision_through_the_session(tmp_path):
    async def replanner(request):
        return repaired()

    session = Orchestration(
        "j", store="memory://",
        options={"functions": Steps(), "replanner": replanner, "on_failure": "replan",
                 "approve": ["report"]},
    )  # fmt: skip
    session.set_graph(research())
    run = session.start()
    await until(lambda: session.proposed_revision is not None, "the proposal")
    session.reject_revision("keep the chart")
    await run
    assert [(r.outcome, r.detail) for r in session.revisions] == [("rejected", "keep the chart")]
    import pytest

    with pytest.raises(onb.RunError, match="has ended"):
        session.accept_revision()
