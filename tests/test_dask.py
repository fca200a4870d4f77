"""Against a real LocalCluster of two worker processes, with results in a real Redis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph
from orchestra_nb.store import open_store
from tests.support import dask_tasks  # noqa: F401  (registers crunch and nap)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT) + (os.pathsep + saved if saved else "")
    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    try:
        yield local
    finally:
        local.close()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "executions.log"
    path.write_text("")
    return path


def lines(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def crunch(tid: str, log: Path, deps: tuple[str, ...] = ()) -> Task:
    return Task(tid, kind="python", function="crunch", dependencies=deps, params={"log": str(log)})


def nap(tid: str, log: Path, seconds: float) -> Task:
    return Task(tid, kind="python", function="nap", params={"log": str(log), "seconds": seconds})


def wide_graph(log: Path, n: int = 200) -> TaskGraph:
    return TaskGraph([crunch(f"t_{i}", log, (f"t_{i - 1}",) if i % 20 else ()) for i in range(n)])


async def test_a_200_task_graph_runs_across_both_workers(cluster, redis_store_url, log):
    executor = onb.DaskExecutor(cluster.scheduler_address)
    try:
        run = await onb.run(
            wide_graph(log), executor=executor, store=redis_store_url, max_workers=4
        )
    finally:
        await executor.close()
    assert run.ok, run.errors
    assert executor.submitted == 200
    assert all(isinstance(r, onb.StoredResult) for r in run.results.values())
    values = [await run.fetch(f"t_{i}") for i in range(200)]
    assert len({v["worker"] for v in values}) == 2
    assert values[5]["inputs"] == ["t_4"]
    starts = [parts[1] for parts in lines(log) if parts[0] == "start"]
    assert sorted(starts) == sorted(f"t_{i}" for i in range(200))  # each ran exactly once


async def test_results_are_visible_from_another_process(cluster, redis_store_url, log):
    executor = onb.DaskExecutor(cluster.scheduler_address)
    g = TaskGraph([crunch(f"t_{i}", log) for i in range(4)])
    try:
        run = await onb.run(g, executor=executor, store=redis_store_url)
    finally:
        await executor.close()
    key = run.keys["t_2"]
    code = (
        "import asyncio, json, sys\n"
        "from orchestra_nb.store import open_store\n"
        "async def main():\n"
        "    store = open_store(sys.argv[1])\n"
        "    print(json.dumps(await store.get(sys.argv[2])))\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        redis_store_url,
        key,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == await run.fetch("t_2")


async def test_a_worker_killed_mid_task_loses_nothing(redis_store_url, log):
    from distributed import LocalCluster

    os.environ.setdefault("PYTHONPATH", str(ROOT))
    async with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", asynchronous=True
    ) as local:
        g = TaskGraph([nap("slow", log, 2.0)] + [crunch(f"t_{i}", log) for i in range(30)])
        executor = onb.DaskExecutor(local.scheduler_address)
        run = onb.start(g, executor=executor, store=redis_store_url, max_workers=2)
        deadline = time.monotonic() + 60
        while not any(p[:2] == ["start", "slow"] for p in lines(log)):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        victim = int(next(p[2] for p in lines(log) if p[:2] == ["start", "slow"]))
        os.kill(victim, signal.SIGKILL)  # the worker process running "slow" dies
        await run
        await executor.close()
    assert run.ok, run.errors
    assert len(run.results) == 31
    events = lines(log)
    ends = [p[1] for p in events if p[0] == "end"]
    assert sorted(ends) == sorted(["slow", *[f"t_{i}" for i in range(30)]])  # finished once each
    slow_starts = [p for p in events if p[:2] == ["start", "slow"]]
    assert len(slow_starts) == 2 and slow_starts[1][2] != str(victim)  # re-run elsewhere
    store = open_store(redis_store_url)
    assert len(await store.get_many(run.keys.values())) == 31
    await store.close()


async def test_cancelling_the_run_reaches_the_cluster(cluster, redis_store_url, log):
    executor = onb.DaskExecutor(cluster.scheduler_address)
    g = TaskGraph([nap(f"n_{i}", log, 1.5) for i in range(6)])
    run = onb.start(g, executor=executor, store=redis_store_url, max_workers=4)
    client = await executor.client()

    async def scheduler_tasks() -> int:
        return await client.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks))

    deadline = time.monotonic() + 30
    while await scheduler_tasks() < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    run.cancel()
    await run
    assert run.state == "cancelled"
    deadline = time.monotonic() + 10
    while await scheduler_tasks() > 0:  # the futures were cancelled and released
        assert time.monotonic() < deadline, "tasks still on the cluster"
        await asyncio.sleep(0.05)
    await executor.close()


async def test_in_memory_store_ships_results_back(cluster, log):
    executor = onb.DaskExecutor(cluster.scheduler_address)
    g = TaskGraph([crunch("t_1", log)])
    try:
        run = await onb.run(g, executor=executor, store="memory://")
    finally:
        await executor.close()
    assert isinstance(run.results["t_1"], dict)  # workers cannot reach memory://, so it came back


async def test_llm_tasks_stay_local_unless_asked(cluster, llm_server, redis_store_url, log):
    g = TaskGraph(
        [
            crunch("data_1", log),
            Task("summary", "Summary", dependencies=("data_1",)),
        ],
        goal="g",
    )
    llm = onb.OpenAILLM("m", base_url=llm_server.url, api_key="k")
    executor = onb.DaskExecutor(cluster.scheduler_address)
    try:
        run = await onb.run(g, executor=executor, llm=llm, store=redis_store_url)
    finally:
        await executor.close()
    assert run.ok, run.errors
    assert executor.submitted == 1
    prompt = llm_server.requests[0]["messages"][1]["content"]
    assert '"worker"' in prompt  # the local LLM task got the stored value, not a reference


async def test_llm_tasks_can_be_sent_to_the_cluster(cluster, llm_server, redis_store_url):
    g = TaskGraph([Task("a", "Alpha"), Task("b", "Beta", dependencies=("a",))], goal="g")
    llm = onb.OpenAILLM(
        "m",
        base_url=llm_server.url,
        api_key="sk-cluster",
        rate_limit=onb.RateLimit(max_concurrency=2),
    )
    await llm.complete("warm up")  # a live client exists: it must not travel to the worker
    executor = onb.DaskExecutor(cluster.scheduler_address, kinds=("python", "llm"))
    try:
        run = await onb.run(g, executor=executor, llm=llm, store=redis_store_url)
    finally:
        await executor.close()
    assert run.ok, run.errors
    assert executor.submitted == 2
    assert await run.fetch("b") == "Answer: ## Step: Beta"
    assert len(llm_server.requests) == 3  # the warm-up here, then one call per task
