"""Plans that grow while they run: tasks start before the whole plan is known."""

from __future__ import annotations

import asyncio

import pytest

import orchestra_nb as onb
from orchestra_nb import PlanError, Task, TaskGraph


class Log:
    def __init__(self):
        self.calls: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, task, inputs):
        self.calls.append(task.id)
        if task.id == "slow":
            await self.release.wait()
        return f"{task.id}<" + ",".join(sorted(inputs))


async def until(condition, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_tasks_start_as_they_are_added_and_the_run_waits_for_the_seal():
    log = Log()
    events: list[onb.Event] = []
    # a growing run starts from the first task the planner has written
    run = onb.start(
        TaskGraph([Task("a")], goal="g"), runner=log, store="memory://", growing=True,
        on_event=events.append,
    )  # fmt: skip
    await until(lambda: run.status.get("a") == "done", "a to run before the plan is complete")
    await run.extend([Task("b", dependencies=("a",)), Task("c")])
    await until(lambda: run.status["b"] == "done" and run.status["c"] == "done", "b and c")
    assert not run.done  # more may come
    run.seal()
    await run
    assert run.ok
    assert run.results["b"] == "b<a"
    assert list(run.graph.tasks) == ["a", "b", "c"]
    added = [e.task_id for e in events if e.kind == "task_added"]
    assert added == ["b", "c"]
    assert [e.data["task"]["id"] for e in events if e.kind == "task_added"] == added


async def test_added_tasks_are_checked_and_a_bad_one_changes_nothing():
    run = onb.start(TaskGraph([Task("a")]), runner=Log(), store="memory://", growing=True)
    with pytest.raises(PlanError, match="unknown"):
        await run.extend([Task("x", dependencies=("nope",))])
    with pytest.raises(PlanError):
        await run.extend([Task("a")])
    assert list(run.graph.tasks) == ["a"]
    run.seal()
    assert (await run).ok


async def test_stored_results_are_reused_for_added_tasks(tmp_path):
    url = f"sqlite:///{tmp_path}/g.db"
    plan = [Task("a"), Task("b", dependencies=("a",))]
    first = await onb.run(TaskGraph(plan), runner=Log(), store=url)
    assert first.ok
    log = Log()
    run = onb.start(TaskGraph(plan[:1]), runner=log, store=url, growing=True)
    await run.extend(plan[1:])
    await run.extend([Task("c", dependencies=("b",))])
    run.seal()
    await run
    assert run.status == {"a": "cached", "b": "cached", "c": "done"}
    assert log.calls == ["c"]


async def test_an_unusable_plan_cancels_what_has_not_started_and_keeps_what_finished(tmp_path):
    url = f"sqlite:///{tmp_path}/bad.db"
    log = Log()
    run = onb.start(TaskGraph([Task("a")]), runner=log, store=url, growing=True, max_workers=1)
    await run.extend([Task("slow"), Task("later", dependencies=("a",))])
    await until(lambda: run.status["slow"] == "running", "slow to start")
    run.seal(error="the plan has a cycle: x -> y -> x")
    log.release.set()
    await run
    assert run.status["a"] == "done"
    assert run.status["slow"] == "done"  # it had started: it finished and was kept
    assert run.status["later"] == "cancelled"
    assert run.errors["later"] == "not started: the plan has a cycle: x -> y -> x"
    assert run.state == "failed"
    again = await onb.run(TaskGraph([Task("a"), Task("slow")]), runner=Log(), store=url)
    assert again.status == {"a": "cached", "slow": "cached"}  # nothing finished was lost


async def test_a_refreshing_run_computes_added_tasks_afresh_too():
    store = onb.open_store("memory://")
    plan = [Task("a"), Task("b", dependencies=("a",))]
    assert (await onb.run(TaskGraph(plan), runner=Log(), store=store)).ok
    log = Log()
    run = onb.start(TaskGraph(plan[:1]), runner=log, store=store, growing=True, refresh=True)
    await run.extend(plan[1:])
    run.seal()
    await run
    assert run.status == {"a": "done", "b": "done"}
    assert log.calls == ["a", "b"]


async def test_an_unusable_plan_sealed_before_the_run_is_prepared_starts_nothing():
    log = Log()
    run = onb.start(TaskGraph([Task("a")]), runner=log, store="memory://", growing=True)
    run.seal(error="the plan has a cycle: x -> y -> x")  # at once: the run is not prepared yet
    await run
    assert run.status == {"a": "cancelled"}
    assert run.state == "failed" and run.error == "the plan has a cycle: x -> y -> x"
    assert log.calls == []
