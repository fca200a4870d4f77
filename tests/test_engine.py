"""The engine: modes, failures, retries, timeouts, cancellation, events, caching."""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
import time
import warnings
from collections import Counter

import pytest

import orchestra_nb as onb
from orchestra_nb import PlanError, RunError, Task, TaskGraph
from tests.support import LoopTicks


def chain(n: int) -> TaskGraph:
    return TaskGraph([Task(f"t{i}", dependencies=(f"t{i - 1}",) if i else ()) for i in range(n)])


def fan(n: int) -> TaskGraph:
    return TaskGraph([Task(f"t{i}") for i in range(n)])


def diamond() -> TaskGraph:
    return TaskGraph(
        [
            Task("a", estimated_time=1),
            Task("b", dependencies=("a",), estimated_time=5),
            Task("c", dependencies=("a",), estimated_time=1),
            Task("d", dependencies=("b", "c"), estimated_time=1),
        ]
    )


class Recorder:
    """A runner that records calls, concurrency and the inputs each task saw."""

    def __init__(self, delay: float = 0.0, fail: dict[str, int] | None = None):
        self.delay = delay
        self.fail = dict(fail or {})  # task id -> number of times to fail first
        self.calls: list[str] = []
        self.inputs: dict[str, dict] = {}
        self.running = 0
        self.peak = 0

    async def __call__(self, task: Task, inputs: dict) -> str:
        self.calls.append(task.id)
        self.inputs[task.id] = dict(inputs)
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(self.delay)
            if self.fail.get(task.id, 0) > 0:
                self.fail[task.id] -= 1
                raise ValueError(f"boom in {task.id}")
            return f"result of {task.id}"
        finally:
            self.running -= 1


async def test_dag_run_passes_inputs_and_returns_results():
    rec = Recorder()
    run = await onb.run(diamond(), runner=rec, store="memory://")
    assert run.ok and run.state == "finished"
    assert run.results == {t: f"result of {t}" for t in "abcd"}
    assert run.status == dict.fromkeys("abcd", "done")
    assert rec.inputs["d"] == {"b": "result of b", "c": "result of c"}
    assert rec.inputs["a"] == {}
    assert set(run.timeline) == set("abcd")
    for tid in "bc":
        assert run.timeline["a"][1] <= run.timeline[tid][0]
    assert run.attempts == dict.fromkeys("abcd", 1)


async def test_max_workers_bounds_concurrency():
    rec = Recorder(delay=0.02)
    run = await onb.run(fan(12), runner=rec, max_workers=3, store="memory://")
    assert run.ok
    assert rec.peak == 3


async def test_pipeline_runs_one_at_a_time_in_topological_order():
    rec = Recorder(delay=0.005)
    g = diamond()
    run = await onb.run(g, runner=rec, mode="pipeline", max_workers=8, store="memory://")
    assert run.ok
    assert rec.peak == 1
    position = {tid: i for i, tid in enumerate(rec.calls)}
    for tid, task in g.tasks.items():
        for dep in task.dependencies:
            assert position[dep] < position[tid]
    assert rec.calls[:2] == ["a", "b"]  # critical path first


async def test_parallel_mode_refuses_dependencies():
    with pytest.raises(PlanError, match="mode 'parallel' runs independent tasks only"):
        await onb.run(diamond(), runner=Recorder(), mode="parallel", store="memory://")
    run = await onb.run(fan(5), runner=Recorder(), mode="parallel", store="memory://")
    assert run.ok


async def test_bad_options_are_refused_before_anything_runs():
    with pytest.raises(RunError, match="unknown mode 'fast'"):
        await onb.run(fan(1), runner=Recorder(), mode="fast", store="memory://")
    with pytest.raises(RunError, match="max_workers must be a positive integer"):
        await onb.run(fan(1), runner=Recorder(), max_workers=0, store="memory://")


async def test_failure_skips_descendants_and_other_branches_go_on():
    rec = Recorder(fail={"b": 99})
    run = await onb.run(diamond(), runner=rec, store="memory://")
    assert run.state == "failed" and not run.ok
    assert run.status == {"a": "done", "b": "failed", "c": "done", "d": "skipped"}
    assert run.errors["b"] == "ValueError: boom in b"
    assert "d" not in rec.calls
    with pytest.raises(onb.TaskFailedError, match="task 'b' failed: ValueError: boom in b"):
        run.result("b")


async def test_fail_fast_cancels_the_rest():
    g = TaskGraph([Task("bad"), *[Task(f"slow{i}") for i in range(4)]])

    async def runner(task, inputs):
        if task.id == "bad":
            raise RuntimeError("nope")
        await asyncio.sleep(5)

    started = time.perf_counter()
    run = await onb.run(g, runner=runner, fail_fast=True, max_workers=5, store="memory://")
    assert time.perf_counter() - started < 3
    assert run.status["bad"] == "failed"
    assert {run.status[f"slow{i}"] for i in range(4)} == {"cancelled"}


async def test_retries_with_backoff_then_success():
    rec = Recorder(fail={"a": 2})
    events = []
    run = await onb.run(
        chain(2), runner=rec, retries=2, backoff=0.01, store="memory://", on_event=events.append
    )
    assert run.ok
    assert run.attempts["t0"] == 1
    rec2 = Recorder(fail={"t0": 2})
    run = await onb.run(chain(2), runner=rec2, retries=2, backoff=0.01, store="memory://")
    assert run.ok and run.attempts["t0"] == 3
    assert rec2.calls == ["t0", "t0", "t0", "t1"]


async def test_retries_exhausted_fail_after_retries_plus_one_attempts():
    rec = Recorder(fail={"t0": 10})
    events = []
    run = await onb.run(
        chain(2), runner=rec, retries=2, backoff=0.01, store="memory://", on_event=events.append
    )
    assert rec.calls == ["t0", "t0", "t0"]
    assert run.status == {"t0": "failed", "t1": "skipped"}
    retrying = [e for e in events if e.kind == "retrying"]
    assert [e.attempt for e in retrying] == [1, 2]
    assert all(0 < e.data["delay"] <= 0.02 for e in retrying)


async def test_a_tasks_retries_can_lower_the_runs_but_never_raise_them():
    # a plan (possibly written by a model) may not raise the user's limits
    g = TaskGraph([Task("a", retries=0), Task("b", retries=3), Task("c", retries=1)])
    rec = Recorder(fail={"a": 1, "b": 3, "c": 1})
    run = await onb.run(g, runner=rec, retries=2, backoff=0.001, store="memory://")
    assert run.status == {"a": "failed", "b": "failed", "c": "done"}
    assert run.attempts == {"a": 1, "b": 3, "c": 2}


async def test_a_tasks_timeout_cannot_outlast_the_runs():
    g = TaskGraph([Task("slow", timeout=100)])

    async def runner(task, inputs):
        await asyncio.sleep(10)

    run = await onb.run(g, runner=runner, timeout=0.05, store="memory://")
    assert run.errors["slow"] == "timed out after 0.05 s"


async def test_timeout_fails_the_task_and_frees_its_slot():
    g = TaskGraph([Task("slow", timeout=0.05), Task("fast")])

    async def runner(task, inputs):
        if task.id == "slow":
            await asyncio.sleep(10)
        return task.id

    run = await onb.run(g, runner=runner, max_workers=1, store="memory://")
    assert run.status == {"slow": "failed", "fast": "done"}
    assert run.errors["slow"] == "timed out after 0.05 s"


async def test_a_task_that_ignores_cancellation_cannot_hold_its_slot():
    g = TaskGraph([Task("stubborn"), Task("next")])
    release = asyncio.Event()

    async def runner(task, inputs):
        if task.id == "stubborn":
            while not release.is_set():
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    continue  # refuses to stop
            return "late"
        return "ok"

    started = time.perf_counter()
    run = await onb.run(g, runner=runner, max_workers=1, timeout=0.05, store="memory://")
    assert time.perf_counter() - started < 5
    assert run.status == {"stubborn": "failed", "next": "done"}
    release.set()
    await asyncio.sleep(0.05)


async def test_run_timeout_cancels_what_is_left():
    rec = Recorder(delay=0.3)
    run = await onb.run(chain(5), runner=rec, run_timeout=0.5, store="memory://")
    assert run.state == "failed"
    assert run.error == "run timed out after 0.5 s"
    assert run.status["t0"] == "done"
    assert run.status["t4"] in ("cancelled", "skipped")


async def test_cancel_the_whole_run_keeps_what_finished():
    rec = Recorder(delay=0.05)
    run = onb.start(chain(20), runner=rec, store="memory://")
    while run.status["t1"] != "done":
        await asyncio.sleep(0.01)
    run.cancel()
    result = await run
    assert result is run and run.state == "cancelled"
    assert run.results["t0"] == "result of t0"
    assert "cancelled" in set(run.status.values())
    assert not any(s in ("running", "ready") for s in run.status.values())
    await asyncio.sleep(0.1)
    calls = len(rec.calls)
    await asyncio.sleep(0.15)
    assert len(rec.calls) == calls  # nothing outlives the run


async def test_cancel_one_task_skips_its_descendants_only():
    g = TaskGraph([Task("a"), Task("b", dependencies=("a",)), Task("c")])
    gate = asyncio.Event()

    async def runner(task, inputs):
        if task.id == "a":
            await asyncio.sleep(10)
        if task.id == "c":
            await gate.wait()
        return task.id

    run = onb.start(g, runner=runner, store="memory://")
    while run.status["a"] != "running":
        await asyncio.sleep(0.01)
    run.cancel("a")
    gate.set()
    await run
    assert run.status == {"a": "cancelled", "b": "skipped", "c": "done"}
    with pytest.raises(RunError, match="no task 'zz'"):
        run.cancel("zz")


async def test_sync_functions_run_in_threads_without_blocking_the_loop():
    loop_thread = threading.get_ident()
    seen = []

    def runner(task, inputs):
        seen.append(threading.get_ident())
        time.sleep(0.1)
        return task.id

    async with LoopTicks() as ticks:
        started = time.perf_counter()
        run = await onb.run(fan(4), runner=runner, max_workers=4, store="memory://")
        elapsed = time.perf_counter() - started
    assert run.ok
    assert loop_thread not in seen
    assert elapsed < 0.35  # four 0.1 s sleeps in parallel threads
    assert ticks.count >= 5  # the loop kept turning


async def test_event_order_for_one_task():
    events = []
    await onb.run(chain(2), runner=Recorder(), store="memory://", on_event=events.append)
    kinds = [(e.kind, e.task_id) for e in events]
    assert kinds == [
        ("run_started", None),
        ("queued", "t0"),
        ("started", "t0"),
        ("done", "t0"),
        ("queued", "t1"),
        ("started", "t1"),
        ("done", "t1"),
        ("run_finished", None),
    ]
    times = [e.time for e in events]
    assert times == sorted(times)
    assert events[-1].data["state"] == "finished"


async def test_the_run_keeps_the_same_events_it_emitted():
    events = []
    run = await onb.run(chain(3), runner=Recorder(), store="memory://", on_event=events.append)
    assert list(run.events) == events and len(run.events) == len(events)
    assert run.events[-1] == events[-1] and run.events[1:3] == events[1:3]
    assert all(isinstance(e, onb.Event) for e in run.events)
    assert run.events[-1].data["state"] == "finished"


async def test_a_finished_run_leaves_little_for_the_garbage_collector():
    # what a run keeps per task (events, records, results, the scheduler's state) must
    # not be objects the collector tracks: with tens of thousands of them its full
    # passes came to a third of the engine's time on large graphs
    async def runner(task: Task, inputs: dict) -> str:
        return task.id

    graph = chain(2000)
    await onb.run(graph, runner=runner, store="memory://")  # imports, caches
    gc.collect()
    before = {id(o) for o in gc.get_objects()}
    run = await onb.run(graph, runner=runner, store="memory://")
    gc.collect()
    kept = Counter(type(o).__name__ for o in gc.get_objects() if id(o) not in before)
    assert run.ok
    assert kept.total() < 200, kept.most_common(5)  # it was six per task


async def test_rerun_of_unchanged_graph_does_no_work_and_edit_reruns_descendants(tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    g = diamond()
    rec = Recorder()
    first = await onb.run(g, runner=rec, store=store)
    assert first.ok and sorted(rec.calls) == ["a", "b", "c", "d"]

    rec2 = Recorder()
    second = await onb.run(g, runner=rec2, store=store)
    assert rec2.calls == []
    assert second.status == dict.fromkeys("abcd", "cached")
    assert second.results == first.results

    g.update_task("b", description="changed")
    rec3 = Recorder()
    third = await onb.run(g, runner=rec3, store=store)
    assert sorted(rec3.calls) == ["b", "d"]
    assert third.status == {"a": "cached", "b": "done", "c": "cached", "d": "done"}


async def test_refresh_all_and_refresh_some(tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    await onb.run(diamond(), runner=Recorder(), store=store)
    rec = Recorder()
    await onb.run(diamond(), runner=rec, store=store, refresh=["c"])
    assert sorted(rec.calls) == ["c", "d"]
    rec = Recorder()
    await onb.run(diamond(), runner=rec, store=store, refresh=True)
    assert sorted(rec.calls) == ["a", "b", "c", "d"]


async def test_identical_tasks_in_flight_run_once():
    g = TaskGraph([Task("x1", description="same"), Task("x2", description="same")])
    g.update_task("x1", name="twin")
    g.update_task("x2", name="twin")
    rec = Recorder(delay=0.05)
    run = await onb.run(g, runner=rec, store="memory://")
    assert run.ok
    assert len(rec.calls) == 1
    assert run.results["x1"] == run.results["x2"]


async def test_priorities_explicit_overrides_critical_path():
    g = TaskGraph(
        [
            Task("long", estimated_time=100),
            Task("short", estimated_time=1),
            Task("urgent", estimated_time=1, priority=10),
        ]
    )
    rec = Recorder()
    await onb.run(g, runner=rec, max_workers=1, store="memory://")
    assert rec.calls == ["urgent", "long", "short"]


async def test_resource_pools_bound_their_tasks():
    g = TaskGraph(
        [Task(f"gpu{i}", resources={"gpu": 1}) for i in range(4)]
        + [Task(f"cpu{i}") for i in range(4)]
    )
    active = {"gpu": 0}
    peak = {"gpu": 0}

    async def runner(task, inputs):
        if task.id.startswith("gpu"):
            active["gpu"] += 1
            peak["gpu"] = max(peak["gpu"], active["gpu"])
            await asyncio.sleep(0.02)
            active["gpu"] -= 1
        return task.id

    run = await onb.run(g, runner=runner, max_workers=8, pools={"gpu": 1}, store="memory://")
    assert run.ok and peak["gpu"] == 1


async def test_no_asyncio_warnings_after_cancel_and_failures(recwarn):
    rec = Recorder(delay=0.02, fail={"t3": 99})
    run = onb.start(fan(10), runner=rec, max_workers=3, store="memory://")
    await asyncio.sleep(0.03)
    run.cancel()
    await run
    run2 = await onb.run(diamond(), runner=Recorder(fail={"a": 99}), store="memory://")
    assert run2.state == "failed"
    del run, run2
    gc.collect()
    await asyncio.sleep(0.05)
    messages = [str(w.message) for w in recwarn.list]
    assert not [m for m in messages if "never retrieved" in m or "destroyed but it is pending" in m]


def test_runs_in_a_plain_script_with_asyncio_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = asyncio.run(onb.run(chain(3), runner=Recorder(), store="memory://"))
    assert run.ok


def test_start_needs_a_running_loop():
    with pytest.raises(RuntimeError):
        onb.engine.start(chain(1), runner=Recorder(), store="memory://")


async def test_progress_and_repr():
    run = await onb.run(diamond(), runner=Recorder(fail={"c": 9}), store="memory://")
    p = run.progress()
    assert (p.total, p.done, p.failed, p.skipped) == (4, 2, 1, 1)
    assert str(p).startswith("2/4 done · 1 failed · 1 skipped")
    assert repr(run).startswith(f"Run('{run.id}', failed, 2/4 done")


async def test_orchestrator_holds_defaults(tmp_path):
    async with onb.Orchestrator(store=f"sqlite:///{tmp_path}/o.db", max_workers=2) as orch:
        rec = Recorder(delay=0.01)
        run = await orch.run(fan(6), runner=rec)
        assert run.ok and rec.peak == 2
        again = await orch.run(fan(6), runner=rec)
        assert set(again.status.values()) == {"cached"}
        history = await orch.history()
        assert [h["run_id"] for h in history[:2]] == [again.id, run.id]
        removed = await orch.invalidate(fan(6), ["t0"], runner=rec)
        assert removed == 1
        third = await orch.run(fan(6), runner=rec)
        assert third.status["t0"] == "done" and third.status["t1"] == "cached"


async def test_an_error_nobody_awaits_is_logged_once(caplog):
    # a run started from a notebook cell may never be awaited: its error must not vanish
    plan = TaskGraph([Task("a", kind="python", function="noop")])
    bad_store = "redis://127.0.0.1:1/0"  # nothing listens there

    def noop() -> None:
        return None

    unawaited = onb.start(plan, functions={"noop": noop}, store=bad_store)
    while not unawaited.done:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0)
    logged = [r.getMessage() for r in caplog.records if "stopped" in r.getMessage()]
    assert len(logged) == 1
    assert logged[0].startswith(f"run {unawaited.id} stopped: cannot reach Redis at")
    caplog.clear()
    with pytest.raises(onb.StoreUnavailableError):
        await onb.run(plan, functions={"noop": noop}, store=bad_store)
    await asyncio.sleep(0)
    assert not [r for r in caplog.records if "stopped" in r.getMessage()]  # it reached us


async def test_only_runs_the_chosen_tasks_with_their_descendants(tmp_path):
    store = f"sqlite:///{tmp_path}/only.db"
    g = TaskGraph(
        [
            Task("a"),
            Task("b", dependencies=("a",)),
            Task("c", dependencies=("b",)),
            Task("x"),
            Task("y", dependencies=("x",)),
        ]
    )
    first = await onb.run(g, runner=Recorder(fail={"b": 1, "x": 1}), store=store)
    assert first.status == {
        "a": "done", "b": "failed", "c": "skipped", "x": "failed", "y": "skipped",
    }  # fmt: skip
    rec = Recorder()
    again = await onb.run(g, runner=rec, store=store, only=["b"])
    assert sorted(rec.calls) == ["b", "c"]  # x is not retried; a comes from the store
    assert again.status == {
        "a": "cached", "b": "done", "c": "done", "x": "skipped", "y": "skipped",
    }  # fmt: skip
    assert again.errors["x"] == "not selected for this run"


async def test_only_brings_the_ancestors_a_chosen_descendant_needs(tmp_path):
    g = TaskGraph([Task("a"), Task("x"), Task("c", dependencies=("a", "x"))])
    rec = Recorder()
    run = await onb.run(g, runner=rec, store="memory://", only=["a"])
    assert sorted(rec.calls) == ["a", "c", "x"]  # c needs x, so x runs too
    assert run.ok
    with pytest.raises(RunError, match="cannot run unknown task 'nope'"):
        await onb.run(g, runner=rec, store="memory://", only=["nope"])


async def test_a_retry_waits_at_least_what_the_server_asked_for():
    class Busy(Exception):
        retry_after = 0.2  # what a 429's Retry-After header said

    attempts: list[float] = []

    async def runner(task, inputs):
        attempts.append(time.perf_counter())
        if len(attempts) == 1:
            raise Busy("429 Too Many Requests")
        return "ok"

    events: list[onb.Event] = []
    run = await onb.run(
        TaskGraph([Task("a")]),
        runner=runner,
        retries=1,
        backoff=0.001,
        store="memory://",
        on_event=events.append,
    )
    assert run.ok
    (retrying,) = [e for e in events if e.kind == "retrying"]
    assert retrying.data["delay"] == 0.2  # not the 1 ms backoff
    assert attempts[1] - attempts[0] >= 0.2


async def test_retry_after_never_exceeds_the_users_max_backoff():
    class Busy(Exception):
        retry_after = 3600.0

    events: list[onb.Event] = []

    async def runner(task, inputs):
        if not [e for e in events if e.kind == "retrying"]:
            raise Busy("429")
        return "ok"

    run = await onb.run(
        TaskGraph([Task("a")]),
        runner=runner,
        retries=1,
        backoff=0.001,
        max_backoff=0.05,
        store="memory://",
        on_event=events.append,
    )
    assert run.ok
    assert [e.data["delay"] for e in events if e.kind == "retrying"] == [0.05]


async def test_a_lease_lost_in_a_race_names_the_winner():
    from orchestra_nb.store._memory import MemoryStore

    class Raced(MemoryStore):
        """After a dead owner's lease is cleared, a live process takes it first."""

        async def release_lease(self, name, owner):
            await super().release_lease(name, owner)
            if owner.endswith(":dead"):
                await self.acquire_lease(name, "otherhost:4242:winner", 30)

    store = Raced("memory://")
    dead = f"{socket.gethostname()}:999999999:dead"  # no such process on this host
    await store.acquire_lease("run:r1", dead, 30)
    with pytest.raises(onb.LeaseError, match=r"\(otherhost:4242:winner\)"):
        await onb.run(TaskGraph([Task("a")]), runner=Recorder(), store=store, run_id="r1")
