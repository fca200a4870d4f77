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
