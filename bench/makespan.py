"""How well the scheduler packs real workflow DAGs onto a bounded pool.

Every WfCommons plan runs with a runner that sleeps each task's recorded
runtime, scaled so the mean task takes ``--mean-ms`` (default 20 ms), for
max_workers 4 and 16. The best any schedule can do is at least
``max(critical path, total work / m)``; the table gives makespan ÷ that bound,
measured, and for a zero-overhead simulation of the same scheduler (same
priorities, same pool), so the gap between the two is the engine's own cost.
Durations are rounded to whole milliseconds (in the simulation too): asyncio's
epoll wait has millisecond resolution and would otherwise add half a
millisecond to every sleep.

    python bench/makespan.py [--mean-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import statistics
import time
from typing import Any

from _common import load_plans, table

import orchestra_nb as onb
from orchestra_nb import TaskGraph
from orchestra_nb._scheduler import Scheduler


def lower_bound(graph: TaskGraph, seconds: dict[str, float], m: int) -> float:
    longest: dict[str, float] = {}
    for tid in graph.topological_order():
        deps = graph.tasks[tid].dependencies
        longest[tid] = seconds[tid] + max((longest[d] for d in deps), default=0.0)
    return max(max(longest.values()), sum(seconds.values()) / m)


def simulate(graph: TaskGraph, seconds: dict[str, float], m: int) -> float:
    """The makespan our scheduler would reach if the engine cost nothing."""
    sched = Scheduler(
        {tid: t.dependencies for tid, t in graph.tasks.items()},
        durations=graph.durations(),
        max_workers=m,
    )
    clock = 0.0
    running: list[tuple[float, int, str]] = []
    seq = 0
    while sched.is_active():
        for tid in sched.get_ready():
            seq += 1
            heapq.heappush(running, (clock + seconds[tid], seq, tid))
        clock, _, tid = heapq.heappop(running)
        sched.done(tid)
    return clock


def measure(graph: TaskGraph, seconds: dict[str, float], m: int) -> tuple[float, dict[str, float]]:
    """The measured makespan, and how long each task's sleep really took."""
    slept: dict[str, float] = {}

    async def runner(task: onb.Task, inputs: dict[str, Any]) -> None:
        started = time.perf_counter()
        await asyncio.sleep(seconds[task.id])
        slept[task.id] = time.perf_counter() - started

    async def main() -> float:
        run = await onb.run(graph, runner=runner, max_workers=m, store="memory://", progress=False)
        assert run.ok, run.error
        starts = [s for s, _ in run.timeline.values()]
        ends = [e for _, e in run.timeline.values()]
        return max(ends) - min(starts)

    return asyncio.run(main()), slept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mean-ms", type=float, default=20.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[4, 16])
    args = parser.parse_args()

    rows = []
    measured_ratios, simulated_ratios, gaps, engine_gaps, overshoots = [], [], [], [], []
    for name, plan in load_plans().items():
        graph = TaskGraph.from_plan(plan)
        runtimes = {tid: float(t.extra.get("runtime_s") or 0.0) for tid, t in graph.tasks.items()}
        mean = statistics.mean(runtimes.values()) or 1.0
        scale = args.mean_ms / 1000 / mean
        # whole milliseconds: the loop's epoll timeout has 1 ms resolution and rounds up, so
        # other durations would overshoot by 0.5 ms on average, which is the timer, not us
        seconds = {tid: round(r * scale, 3) for tid, r in runtimes.items()}
        for m in args.workers:
            bound = lower_bound(graph, seconds, m)
            sim = simulate(graph, seconds, m) / bound
            makespan, slept = measure(graph, seconds, m)
            real = makespan / bound
            # the same simulation fed with how long each sleep really took: what is left
            # between it and the measurement is the engine's own cost
            sim_slept = simulate(graph, slept, m) / bound
            over = statistics.median(slept[t] - seconds[t] for t in slept) * 1000
            measured_ratios.append(real)
            simulated_ratios.append(sim)
            gaps.append(real / sim - 1)
            engine_gaps.append(real / sim_slept - 1)
            overshoots.append(over)
            rows.append(
                [
                    name,
                    len(graph),
                    m,
                    f"{bound:.3f}",
                    real,
                    sim,
                    f"{100 * (real / sim - 1):+.1f}%",
                    f"{over:.2f}",
                    f"{100 * (real / sim_slept - 1):+.1f}%",
                ]
            )
    headers = [
        "plan",
        "tasks",
        "m",
        "bound s",
        "measured ÷ bound",
        "simulated ÷ bound",
        "vs sim",
        "sleep overshoot ms",
        "vs sim of actual sleeps",
    ]
    print(
        table(headers, rows, title=f"Makespan on WfCommons plans (mean task {args.mean_ms:g} ms)")
    )
    print()
    print(
        f"measured ÷ bound: median {statistics.median(measured_ratios):.3f}, "
        f"max {max(measured_ratios):.3f} | simulated: median "
        f"{statistics.median(simulated_ratios):.3f}, max {max(simulated_ratios):.3f} | "
        f"measured vs simulation: median {100 * statistics.median(gaps):+.1f}% "
        f"(timer overshoot per sleep: median {statistics.median(overshoots):.2f} ms; "
        f"vs simulation of the actual sleeps: median {100 * statistics.median(engine_gaps):+.1f}%)"
    )


if __name__ == "__main__":
    main()
