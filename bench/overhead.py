"""Per-task overhead on no-op tasks: orchestra_nb vs bare asyncio, dask threaded, a naive loop.

Graphs: a 10,000-task chain, a 10,000-task fan-out, and the largest WfCommons plan.
Each engine runs the same graph with a task that does nothing; the figure is
wall time ÷ tasks, median of several repeats (the naive executor, being
quadratic, runs once). orchestra_nb runs with the options a user gets by default
(the progress bar included, written to a null stream) on the memory store and
the SQLite store (a fresh file each repeat), so every result is committed as in
real use. "bare asyncio" is the floor: one asyncio task per graph task awaiting
its dependencies' tasks, no pool, no bookkeeping.

    python bench/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
from typing import Any

from _common import load_plans, median_time, table

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph


def chain(n: int) -> TaskGraph:
    return TaskGraph([Task(f"t{i}", dependencies=(f"t{i - 1}",) if i else ()) for i in range(n)])


def fan_out(n: int) -> TaskGraph:
    return TaskGraph([Task("root"), *[Task(f"t{i}", dependencies=("root",)) for i in range(n - 1)]])


async def _noop(task: Task, inputs: dict[str, Any]) -> None:
    return None


def run_orchestra(graph: TaskGraph, store: str) -> None:
    async def main() -> None:
        run = await onb.run(graph, runner=_noop, store=store, max_workers=8, progress=True)
        assert run.ok, run.error

    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        asyncio.run(main())


def run_bare_asyncio(graph: TaskGraph) -> None:
    """The floor: one asyncio task per graph task, awaiting its dependencies' tasks."""

    async def main() -> None:
        futures: dict[str, asyncio.Task[None]] = {}

        async def one(task: Task, deps: list[asyncio.Task[None]]) -> None:
            for dep in deps:
                await dep
            await _noop(task, {})

        for tid in graph.dependency_order():
            task = graph.tasks[tid]
            futures[tid] = asyncio.ensure_future(one(task, [futures[d] for d in task.dependencies]))
        await asyncio.gather(*futures.values())

    asyncio.run(main())


def run_sqlite(graph: TaskGraph) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_orchestra(graph, f"sqlite:///{tmp}/bench.db")


def _dask_noop(*args: Any) -> None:
    return None


def run_dask(graph: TaskGraph) -> None:
    import dask.threaded

    dsk = {tid: (_dask_noop, *t.dependencies) for tid, t in graph.tasks.items()}
    dask.threaded.get(dsk, list(graph.sinks()), num_workers=8)


def run_naive(graph: TaskGraph, workers: int = 8) -> None:
    """Asyncio and the same pool, but ready tasks are found by rescanning after each completion."""

    async def main() -> None:
        deps = {tid: t.dependencies for tid, t in graph.tasks.items()}
        done: set[str] = set()
        started: set[str] = set()
        running: set[asyncio.Task[str]] = set()

        async def work(tid: str) -> str:
            await _noop(graph.tasks[tid], {})
            return tid

        while len(done) < len(deps):
            # the rescan: every task, every time, as a scheduler without indexes would
            ready = [
                tid
                for tid, parents in deps.items()
                if tid not in started and all(p in done for p in parents)
            ]
            for tid in ready[: workers - len(running)]:
                started.add(tid)
                running.add(asyncio.ensure_future(work(tid)))
            finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                running.discard(task)
                done.add(task.result())

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=10_000)
    args = parser.parse_args()

    plans = load_plans()
    largest_name = max(plans, key=lambda k: len(plans[k]["subtasks"]))
    graphs = {
        f"chain {args.size:,}": chain(args.size),
        f"fan-out {args.size:,}": fan_out(args.size),
        f"{largest_name} ({len(plans[largest_name]['subtasks']):,})": TaskGraph.from_plan(
            plans[largest_name]
        ),
    }
    engines = {
        "orchestra memory": lambda g: run_orchestra(g, "memory://"),
        "orchestra sqlite": run_sqlite,
        "bare asyncio": run_bare_asyncio,
        "dask threaded": run_dask,
        "naive rescan": run_naive,
    }
    rows = []
    for gname, graph in graphs.items():
        row: list[Any] = [gname]
        for ename, engine in engines.items():
            repeats = 1 if ename == "naive rescan" else args.repeats
            median, _ = median_time(lambda e=engine, g=graph: e(g), repeats)
            row.append(median / len(graph) * 1e6)
        rows.append(row)
    print(
        table(
            ["graph", *[f"{e} µs/task" for e in engines]],
            rows,
            title=f"Per-task overhead, no-op tasks, max_workers=8 (median of "
            f"{args.repeats}; naive: 1 run) — cpu count {os.cpu_count()}",
        )
    )
    print()
    print(
        table(
            ["graph", "memory ÷ bare asyncio", "memory ÷ dask threaded"],
            [[r[0], f"{r[1] / r[3]:.2f}×", f"{r[1] / r[4]:.2f}×"] for r in rows],
            title="orchestra_nb (memory store) relative to its peers, lower is better",
        )
    )


if __name__ == "__main__":
    main()
