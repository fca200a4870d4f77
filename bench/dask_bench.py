"""Scale-out: a CPU-bound graph on a LocalCluster vs local threads, and per-task overhead.

1. 64 tasks of about 0.2 s of numpy work each (small matrices in a Python loop, so
   the GIL is held most of the time, as in most real Python steps): run with
   ``DaskExecutor`` on a ``LocalCluster`` of 2 worker processes vs. in the
   notebook's threads (``max_workers=2``).
2. Per-task overhead: the same graph of no-op tasks through our executor vs.
   dask's own ``client.submit``, in the same run, two ways: the whole graph at
   once with futures as dependencies (dask resolves them on the cluster), and
   each task submitted when its dependency has finished — what any scheduler
   that decides at run time (priorities, pools, retries, cache hits) must do.

    python bench/dask_bench.py [--tasks 64] [--noop-tasks 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from typing import Any

from _common import ROOT, table

sys.path.insert(0, str(ROOT / "bench"))
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "bench"), str(ROOT)])

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph


@onb.task_function(name="bench_crunch", version="1")
def crunch(task: Task) -> float:
    """A fixed amount of numpy on small matrices (about 0.2 s alone, mostly under the GIL)."""
    import numpy as np

    rng = np.random.default_rng(len(task.id))
    a = rng.random((24, 24))
    total = 0.0
    for _ in range(50_000):
        a = a @ a
        a /= np.abs(a).max()
        total += float(a[0, 0])
    return total


@onb.task_function(name="bench_noop", version="1")
def noop() -> None:
    return None


def _noop(*args: Any) -> None:
    return None


def layered(n: int, function: str) -> TaskGraph:
    """n tasks in layers of 20, each depending on one task of the layer before."""
    return TaskGraph(
        [
            Task(
                f"t{i}",
                kind="python",
                function=function,
                dependencies=(f"t{i - 20}",) if i >= 20 else (),
            )
            for i in range(n)
        ]
    )


async def cpu_bound(cluster: Any, n: int) -> tuple[float, float]:
    graph = TaskGraph([Task(f"c{i}", kind="python", function="bench_crunch") for i in range(n)])
    executor = onb.DaskExecutor(cluster)
    await executor.client()  # connect first: the comparison is about the work
    started = time.perf_counter()
    run = await onb.run(graph, executor=executor, store="memory://", max_workers=4)
    on_cluster = time.perf_counter() - started
    assert run.ok, run.errors
    await executor.close()
    started = time.perf_counter()
    run = await onb.run(graph, store="memory://", max_workers=2)
    on_threads = time.perf_counter() - started
    assert run.ok
    return on_cluster, on_threads


async def dask_as_ready(client: Any, graph: TaskGraph) -> None:
    """Plain dask, submitting each task once its dependencies have finished."""
    from distributed import wait

    finished = {tid: asyncio.Event() for tid in graph.tasks}

    async def one(tid: str) -> None:
        for dep in graph.tasks[tid].dependencies:
            await finished[dep].wait()
        future = client.submit(_noop, key=f"{tid}-{time.perf_counter_ns()}", pure=False)
        await wait([future])
        future.release()
        finished[tid].set()

    await asyncio.gather(*(one(tid) for tid in graph.tasks))


async def overhead(cluster: Any, n: int, repeats: int) -> tuple[float, float, float, float]:
    from distributed import Client

    graph = layered(n, "bench_noop")
    client = await Client(cluster.scheduler_address, asynchronous=True)
    ours, ours_redis, theirs, as_ready = [], [], [], []
    executor = onb.DaskExecutor(client)
    for _ in range(repeats):
        started = time.perf_counter()
        run = await onb.run(graph, executor=executor, store="memory://", max_workers=64)
        ours.append(time.perf_counter() - started)
        assert run.ok, run.errors
        started = time.perf_counter()
        run = await onb.run(
            graph,
            executor=executor,
            max_workers=64,
            store="redis://127.0.0.1:6379/0?namespace=bench-dask&ttl=600",
        )
        ours_redis.append(time.perf_counter() - started)
        assert run.ok, run.errors
        await onb.Orchestrator(store=run.store.url).clear_cache()
        started = time.perf_counter()
        futures: dict[str, Any] = {}
        for tid in graph.topological_order():
            deps = [futures[d] for d in graph.tasks[tid].dependencies]
            futures[tid] = client.submit(_noop, *deps, key=f"{tid}-{time.perf_counter_ns()}")
        await client.gather(list(futures.values()))
        theirs.append(time.perf_counter() - started)
        del futures
        started = time.perf_counter()
        await dask_as_ready(client, graph)
        as_ready.append(time.perf_counter() - started)
    await client.close()
    return tuple(statistics.median(x) for x in (ours, ours_redis, theirs, as_ready))  # type: ignore[return-value]


async def main() -> None:
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--noop-tasks", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    async with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", asynchronous=True
    ) as cluster:
        on_cluster, on_threads = await cpu_bound(cluster, args.tasks)
        ours, ours_redis, theirs, as_ready = await overhead(cluster, args.noop_tasks, args.repeats)
    print(
        table(
            ["where", "seconds", "speed-up vs threads"],
            [
                ["LocalCluster, 2 worker processes", on_cluster, on_threads / on_cluster],
                ["notebook threads (max_workers=2)", on_threads, 1.0],
            ],
            title=f"{args.tasks} CPU-bound tasks of ~0.2 s",
        )
    )
    print()
    n = args.noop_tasks
    print(
        table(
            ["engine", "ms per task", "÷ dask, whole graph", "÷ dask, as ready"],
            [
                [
                    "orchestra_nb DaskExecutor, memory store (values shipped)",
                    ours / n * 1e3,
                    ours / theirs,
                    ours / as_ready,
                ],
                [
                    "orchestra_nb DaskExecutor, Redis store (workers commit)",
                    ours_redis / n * 1e3,
                    ours_redis / theirs,
                    ours_redis / as_ready,
                ],
                [
                    "dask client.submit, whole graph with future dependencies",
                    theirs / n * 1e3,
                    1.0,
                    theirs / as_ready,
                ],
                [
                    "dask client.submit, each task when its dependency finished",
                    as_ready / n * 1e3,
                    as_ready / theirs,
                    1.0,
                ],
            ],
            title=f"Per-task overhead, {n} no-op tasks in layers of 20 (median of {args.repeats})",
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
