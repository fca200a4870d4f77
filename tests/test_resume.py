"""Nothing is lost: killed processes, a store that goes away, leases, history, rollback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

import orchestra_nb as onb
from orchestra_nb import LeaseError, RunError, StoreUnavailableError, Task, TaskGraph
from orchestra_nb.store import open_store
from tests.support import resume_child


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.resume_child",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


def _lines(path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_sigkill_mid_run_then_resume_in_another_process(backend, tmp_path, request):
    """Killed once per-task records are in the store: the resume runs none of the recorded
    tasks again, as the tasks' own execution log shows."""
    store_url = (
        f"sqlite:///{tmp_path}/r.db"
        if backend == "sqlite"
        else request.getfixturevalue("redis_store_url")
    )
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    child = await _spawn("run", store_url, "killme", str(first_log))
    watcher = open_store(store_url)  # another connection, as a second process would have
    deadline = time.monotonic() + 60
    recorded: set[str] = set()
    while len(recorded) < 5:  # records are flushed in batches: wait for the first ones
        assert time.monotonic() < deadline, "the child never recorded a finished task"
        assert child.returncode is None, (await child.stderr.read()).decode()
        record = await watcher.load_run("killme")
        if record is not None:
            recorded = {t for t, e in record.tasks.items() if e.get("status") == "done"}
        await asyncio.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    await child.wait()

    record = await watcher.load_run("killme")
    recorded = {t for t, e in record.tasks.items() if e.get("status") == "done"}
    keys = record.header["keys"]
    committed = {tid for tid, key in keys.items() if key in await watcher.has_many([key])}
    await watcher.close()
    assert recorded <= committed  # a record is written only after its result is committed
    assert len(recorded) >= 5 and len(committed) < 50  # killed mid-run, after records exist

    second = await _spawn("resume", store_url, "killme", str(second_log))
    out, err = await asyncio.wait_for(second.communicate(), 120)
    assert second.returncode == 0, err.decode()
    assert out.decode().split() == ["finished", "50"]

    first, rerun = _lines(first_log), _lines(second_log)
    assert not (set(rerun) & recorded), f"recorded tasks ran again: {sorted(set(rerun) & recorded)}"
    assert not (set(rerun) & committed), (
        f"committed tasks ran again: {sorted(set(rerun) & committed)}"
    )
    assert set(first) | set(rerun) == {f"t{i}" for i in range(50)}
    assert len(rerun) == len(set(rerun)) == 50 - len(committed)  # each missing task ran once
    in_flight = set(first) - committed  # started, killed before committing
    assert len(in_flight) <= 3  # max_workers

    store = open_store(store_url)
    results = await store.get_many(keys.values())
    await store.close()
    assert len(results) == 50
    g = resume_child.graph()
    for tid, task in g.tasks.items():
        assert results[keys[tid]] == f"{tid}:" + ",".join(sorted(task.dependencies))


async def test_redis_stopped_mid_run_keeps_results_and_resume_finishes(redis_server):
    g = TaskGraph([Task(f"t{i}", dependencies=(f"t{i - 1}",) if i else ()) for i in range(12)])
    executed: list[str] = []

    async def runner(task, inputs):
        executed.append(task.id)
        if task.id == "t5":
            await asyncio.to_thread(redis_server.stop)
        return f"r{task.id}"

    with pytest.raises(StoreUnavailableError) as info:
        await onb.run(g, runner=runner, store=redis_server.url)
    message = str(info.value)
    assert message.startswith("cannot reach Redis at redis://127.0.0.1:")
    assert "1 computed result(s) kept in memory" in message
    assert "\n" not in message
    stopped = info.value.run
    assert stopped.state == "failed"
    assert stopped.results == {f"t{i}": f"rt{i}" for i in range(6)}
    assert stopped.status["t5"] == "unsaved"
    assert stopped.status["t6"] == "pending"

    redis_server.start()  # comes back empty: it keeps nothing on disk
    executed.clear()
    finished = await onb.resume(stopped, runner=runner)
    assert finished.ok
    assert executed == [f"t{i}" for i in range(6, 12)]  # nothing computed is computed again
    assert finished.results == {f"t{i}": f"rt{i}" for i in range(12)}
    store = open_store(redis_server.url)
    assert len(await store.get_many(finished.keys.values())) == 12
    await store.close()


async def test_unreachable_store_at_start_is_a_clear_error():
    from tests.support.redis_server import free_port

    g = TaskGraph([Task("a")])
    with pytest.raises(StoreUnavailableError, match=r"^cannot reach Redis at redis://:\*\*\*@"):
        await onb.run(g, runner=lambda t, i: "x", store=f"redis://:pw@127.0.0.1:{free_port()}/0")


async def test_second_kernel_cannot_execute_the_same_run(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    g = TaskGraph([Task("slow")])
    gate = asyncio.Event()

    async def runner(task, inputs):
        await gate.wait()
        return "x"

    first = onb.start(g, runner=runner, store=url, run_id="shared")
    while first.status["slow"] != "running":
        await asyncio.sleep(0.01)
    store = open_store(url)  # a separate connection, as another kernel would have
    other_owner = "otherhost:1:abc"
    assert not await store.acquire_lease("run:shared", other_owner, 30)
    with pytest.raises(LeaseError, match=r"run 'shared' is being executed by another process"):
        await onb.run(g, runner=runner, store=url, run_id="shared")
    gate.set()
    await first
    assert first.ok
    assert await store.acquire_lease("run:shared", other_owner, 30)  # released at the end
    await store.close()


async def test_resume_by_id_runs_only_what_is_missing(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    g = TaskGraph([Task("a"), Task("b", dependencies=("a",)), Task("c", dependencies=("b",))])
    calls: list[str] = []
    slow = {"b"}

    async def runner(task, inputs):
        calls.append(task.id)
        if task.id in slow:
            await asyncio.sleep(10)
        return task.id

    run = onb.start(g, runner=runner, store=url, run_id="r1")
    while run.status["b"] != "running":
        await asyncio.sleep(0.01)
    run.cancel()
    await run
    assert run.state == "cancelled"
    assert run.status == {"a": "done", "b": "cancelled", "c": "cancelled"}

    calls.clear()
    slow.clear()
    resumed = await onb.resume("r1", runner=runner, store=url)
    assert resumed.ok
    assert calls == ["b", "c"]
    assert resumed.status == {"a": "done", "b": "done", "c": "done"}
    with pytest.raises(RunError, match="no run 'nope' in the store"):
        await onb.resume("nope", runner=runner, store=url)


async def test_history_and_rollback(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    g = TaskGraph([Task("a", description="v1"), Task("b", dependencies=("a",))])

    async def runner(task, inputs):
        return f"{task.id} from {task.description or '-'}"

    first = await onb.run(g, runner=runner, store=url, run_id="first")
    g.update_task("a", description="v2")
    second = await onb.run(g, runner=runner, store=url, run_id="second")
    assert second.results["a"] == "a from v2"
    runs = await onb.history(url)
    assert [r["run_id"] for r in runs] == ["second", "first"]
    assert runs[0]["state"] == "finished"
    old = await onb.rollback("first", store=url)
    assert old.results == first.results
    assert old.graph.tasks["a"].description == "v1"
    assert old.state == "finished"
    assert set(old.timeline) == {"a", "b"}
