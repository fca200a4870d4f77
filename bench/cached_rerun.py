"""A fully cached rerun of a 1,000-task graph: how long until every result is back.

The graph runs once to fill the store; each rerun then finds every key in one
batch read and executes nothing. Timed end to end (keys, reads, run record,
lease), median of several reruns, on SQLite and on Redis.

    python bench/cached_rerun.py [--tasks 1000] [--redis redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from typing import Any

from _common import median_time, random_dag, table

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph


async def runner(task: Task, inputs: dict[str, Any]) -> str:
    return f"result of {task.id} " + "x" * 200


def rerun_times(graph: TaskGraph, store: str, repeats: int) -> tuple[float, float]:
    async def first() -> None:
        run = await onb.run(graph, runner=runner, store=store, progress=False)
        assert run.ok, run.error

    async def again() -> None:
        run = await onb.run(graph, runner=runner, store=store, progress=False)
        assert set(run.status.values()) == {"cached"}, run.progress()

    started = time.perf_counter()
    asyncio.run(first())
    cold = time.perf_counter() - started
    median, _ = median_time(lambda: asyncio.run(again()), repeats)
    return cold, median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    graph = random_dag(args.tasks)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, url in (
            ("sqlite", f"sqlite:///{tmp}/bench.db"),
            ("redis", f"{args.redis}?namespace=bench-{uuid.uuid4().hex[:8]}&ttl=600"),
        ):
            cold, warm = rerun_times(graph, url, args.repeats)
            rows.append([name, cold * 1000, warm * 1000, cold / warm])
            if name == "redis":
                asyncio.run(_clear(url))
    print(
        table(
            ["store", "first run ms", "cached rerun ms (median)", "speedup ×"],
            rows,
            title=f"Fully cached rerun, {args.tasks:,} tasks",
        )
    )


async def _clear(url: str) -> None:
    store = onb.open_store(url)
    await store.clear()
    await store.close()


if __name__ == "__main__":
    main()
