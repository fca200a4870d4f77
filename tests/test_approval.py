"""Approval gates in the engine: waiting without blocking, deciding, and surviving restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

import orchestra_nb as onb
from orchestra_nb import RunError, Task, TaskGraph
from orchestra_nb.engine import record_decision
from orchestra_nb.store import open_store
from tests.support import approval_child


class Log:
    """A runner that writes down every execution, as the tasks' own side effect."""

    def __init__(self, delay: float = 0.0):
        self.calls: list[str] = []
        self.delay = delay
        self.running = 0
        self.peak = 0

    async def __call__(self, task, inputs):
        self.calls.append(task.id)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        return task.id


async def until(condition, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def plan() -> TaskGraph:
    return TaskGraph(
        [
            Task("a"),
            Task("b", dependencies=("a",)),
            Task("c", dependencies=("b",)),
            Task("s1"),
            Task("s2", dependencies=("s1",)),
        ]
    )


async def test_a_gated_task_waits_for_approval_while_other_branches_run():
    log = Log()
    events: list[onb.Event] = []
    run = onb.start(plan(), runner=log, store="memory://", approve=["b"], on_event=events.append)
    await until(lambda: run.status["b"] == "awaiting_approval", "b to wait")
    await until(lambda: run.status["s2"] == "done", "the other branch")
    assert "b" not in log.calls and "c" not in log.calls
    assert run.awaiting_approval == ["b"]
    assert not run.done
    run.approve("b")
    await run
    assert run.ok
    assert log.calls.index("a") < log.calls.index("b") < log.calls.index("c")
    kinds = [e.kind for e in events if e.task_id == "b"]
    assert kinds == ["awaiting_approval", "approved", "started", "done"]


async def test_rejecting_skips_the_task_and_its_descendants():
    log = Log()
    run = onb.start(plan(), runner=log, store="memory://", approve="all")
    await until(lambda: run.awaiting_approval == ["a", "s1"], "the roots to wait")
    run.reject("a", reason="too costly")
    run.approve("s1")
    await until(lambda: run.awaiting_approval == ["s2"], "s2 to wait")
    run.approve("s2")
    await run
    assert log.calls == ["s1", "s2"]
    assert run.status == {
        "a": "skipped", "b": "skipped", "c": "skipped", "s1": "done", "s2": "done",
    }  # fmt: skip
    assert run.errors["a"] == "rejected: too costly"
    assert run.errors["b"] == "'a' was rejected"
    assert run.state == "failed"


async def test_approve_by_kind_by_predicate_and_from_the_plan():
    g = TaskGraph(
        [
            Task("fetch", kind="python", function="noop"),
            Task("draft", dependencies=("fetch",)),
            Task("ship", kind="report", dependencies=("draft",), approval=True),
        ]
    )
    run = onb.start(g, runner=Log(), store="memory://", approve="llm")
    await until(lambda: run.awaiting_approval == ["draft"], "the llm task")
    run.approve("draft")
    await until(lambda: run.awaiting_approval == ["ship"], "the task its plan gates")
    run.approve("ship")
    assert (await run).ok

    picky = onb.start(g, runner=Log(), store="memory://", approve=lambda t: t.id == "fetch")
    await until(lambda: picky.awaiting_approval == ["fetch"], "the predicate's task")
    picky.cancel()
    await picky
    with pytest.raises(RunError, match=r"approve names unknown task\(s\): 'nope'"):
        onb.start(g, runner=Log(), store="memory://", approve=["nope"])
    with pytest.raises(RunError, match="approve='gpu' is neither 'all', a kind"):
        onb.start(g, runner=Log(), store="memory://", approve="gpu")


async def test_approving_ahead_and_deciding_twice():
    log = Log()
    run = onb.start(plan(), runner=log, store="memory://", approve=["c"])
    run.approve("c")  # c is still pending: approved ahead, it will not stop
    await run
    assert run.ok and run.awaiting_approval == []
    with pytest.raises(RunError, match="is not running"):
        run.approve("c")
    again = onb.start(plan(), runner=Log(), store="memory://", approve=["a"])
    await until(lambda: again.awaiting_approval == ["a"], "a")
    with pytest.raises(RunError, match=r"task 's1' is not awaiting approval \("):
        again.approve("s1")
    again.approve("a")
    await again


async def test_waiting_tasks_hold_no_slot():
    log = Log(delay=0.02)
    g = TaskGraph([Task("gated"), *[Task(f"t{i}") for i in range(6)]])
    run = onb.start(g, runner=log, store="memory://", max_workers=2, approve=["gated"])
    await until(lambda: all(run.status[f"t{i}"] == "done" for i in range(6)), "the others")
    assert log.peak == 2  # both slots served the others while "gated" waited
    assert run.status["gated"] == "awaiting_approval"
    run.approve("gated")
    await run
    assert run.ok and log.peak == 2


async def test_an_approval_nobody_gives_times_out():
    log = Log()
    run = await onb.run(plan(), runner=log, store="memory://", approve=["b"], approval_timeout=0.1)
    assert run.status["b"] == "skipped"
    assert run.errors["b"] == "rejected: approval timed out after 0.1 s"
    assert run.status["c"] == "skipped"
    assert sorted(log.calls) == ["a", "s1", "s2"]


async def test_a_decision_written_by_another_process_reaches_the_running_run(tmp_path):
    url = f"sqlite:///{tmp_path}/gates.db"
    log = Log()
    run = onb.start(plan(), runner=log, store=url, approve=["b"], run_id="r-cli")
    await until(lambda: run.awaiting_approval == ["b"], "b")
    await asyncio.sleep(0.4)  # its waiting state is in the record by now
    other = open_store(url)  # what `orchestra-nb approve r-cli b` opens
    with pytest.raises(RunError, match="task 'a' of run 'r-cli' is not awaiting approval"):
        await record_decision(other, "r-cli", "a", approved=True)
    await record_decision(other, "r-cli", "b", approved=True)
    await other.close()
    await asyncio.wait_for(run, 5)
    assert run.ok and "b" in log.calls


async def test_the_waiting_state_survives_a_killed_kernel(tmp_path):
    url = f"sqlite:///{tmp_path}/restart.db"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.approval_child", url, "r-kill", str(first_log),
        env=env,
    )  # fmt: skip
    store = open_store(url)
    try:
        for _ in range(1000):  # until the record says "costly" awaits approval
            record = await store.load_run("r-kill")
            if record and record.tasks.get("costly", {}).get("status") == "awaiting_approval":
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the child never recorded its waiting task")
        child.send_signal(signal.SIGKILL)  # the kernel dies while a person has not decided
        await child.wait()
    finally:
        await store.close()
    assert sorted(first_log.read_text().split()) == ["collect", "side"]

    resumed = await onb.start_resume(
        "r-kill", approval_child.make_runner(str(second_log)), store=url
    )
    await until(lambda: resumed.awaiting_approval == ["costly"], "the same task to wait again")
    assert resumed.status["collect"] == "done" and resumed.status["side"] == "done"
    resumed.approve("costly")
    await resumed
    assert resumed.ok
    assert second_log.read_text().split() == ["costly", "report"]  # nothing ran twice


async def test_update_task_approval_gates_a_task():
    g = plan()
    g.update_task("c", approval=True)
    run = onb.start(g, runner=Log(), store="memory://")
    await until(lambda: run.awaiting_approval == ["c"], "c to wait")
    run.approve("c")
    assert (await run).ok


class Described(Log):
    """Returns what the task said to do, so an edit shows in the results."""

    async def __call__(self, task, inputs):
        await super().__call__(task, inputs)
        if task.id == "slow":
            await self.release.wait()
        return task.description or task.id

    def __init__(self):
        super().__init__()
        self.release = asyncio.Event()


async def test_edit_then_approve_runs_the_edited_task_and_its_descendants():
    log = Described()
    g = TaskGraph(
        [
            Task("a"),
            Task("b", "Costly", "the full survey", dependencies=("a",)),
            Task("c", dependencies=("b",)),
            Task("slow"),
        ]
    )
    events: list[onb.Event] = []
    run = onb.start(g, runner=log, store="memory://", approve=["b"], on_event=events.append)
    await until(lambda: run.awaiting_approval == ["b"], "b to wait")
    with pytest.raises(onb.PlanError, match="cannot update 'id'"):
        run.edit_then_approve("b", id="x")
    with pytest.raises(onb.PlanError, match="depends on unknown task 'zz'"):
        run.edit_then_approve("b", dependencies=("zz",))
    assert run.awaiting_approval == ["b"] and run.revisions == []  # nothing changed
    run.edit_then_approve("b", description="a small survey")
    with pytest.raises(RunError, match="was edited and approved"):
        run.approve("b")
    await asyncio.sleep(0.05)
    assert "b" not in log.calls  # the edit waits until nothing runs ("slow" still does)
    log.release.set()
    await run
    assert run.ok, run.status
    assert run.results["b"] == "a small survey"
    assert run.graph.tasks["b"].description == "a small survey"
    assert log.calls.count("a") == 1 and log.calls.count("b") == 1  # a's result was kept
    (revision,) = run.revisions
    assert revision.source == "edit" and revision.changed == ("b",)
    assert revision.reason == "task 'b' edited before approval (description)"
    kinds = [e.kind for e in events if e.task_id == "b"]
    assert kinds.count("awaiting_approval") == 1  # not asked again after the edit


async def test_edit_then_approve_does_not_count_as_a_replan():
    log = Described()
    log.release.set()

    async def never(request):
        raise AssertionError("no failure here")

    run = onb.start(
        plan(), runner=log, store="memory://", approve=["b"], on_failure="replan",
        replanner=never, max_replans=0,
    )  # fmt: skip
    await until(lambda: run.awaiting_approval == ["b"], "b to wait")
    run.edit_then_approve("b", description="changed")
    await run
    assert run.ok and [r.source for r in run.revisions] == ["edit"]


async def test_a_cancelled_run_keeps_its_waiting_tasks_for_a_later_decision(tmp_path):
    url = f"sqlite:///{tmp_path}/cancel.db"
    log = Log()
    run = onb.start(plan(), runner=log, store=url, approve=["b"], run_id="r-stop")
    await until(lambda: run.awaiting_approval == ["b"], "b to wait")
    await until(lambda: run.status["s2"] == "done", "the other branch")
    run.cancel()
    await run
    assert run.state == "cancelled" and run.status["b"] == "cancelled"
    store = open_store(url)
    await record_decision(store, "r-stop", "b", approved=True)  # the run is stopped
    await store.close()
    again = await onb.resume("r-stop", runner=log, store=url)
    assert again.ok and log.calls.count("b") == 1 and log.calls.count("a") == 1
