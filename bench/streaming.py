"""Plans that run while they stream, against planning first and running after.

Three plans are replayed as a model would write them — 40 tokens a second after
a 0.5 s first-token delay (the offline replay's pacing; a non-streamed answer
takes as long as writing all of it) — and run with max_workers=5, LLM tasks
taking 2-8 s each (drawn per task, the same in both ways of running; Python and
report steps take no time here):

- the market-research demo's recorded plan (9 tasks, notebooks/recordings);
- generated plans of 20 and 60 tasks in the same seed format (a research /
  analysis / synthesis / report shape, one task per line of JSON).

For each plan, in the same process and alternating: ``plan_and_run(stream=True)``
against ``plan_and_run(stream=False)`` (plan, then run). Reported: end-to-end time
of each and the speed-up (medians over the repeats; each repeat draws the task
times anew, the same for both ways of running) and its range; time to the first
task's start; and the dispatch delay — from the moment the streamed answer holds a
task's object whole to that task's start, for tasks that could start at once
(their dependencies done and a worker free; target <= 50 ms).

    python bench/streaming.py                 # the real setting (several minutes)
    python bench/streaming.py --scale 0.1     # every delay 10x shorter, for a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, table

import orchestra_nb as onb
from orchestra_nb import PlanStream, ReplayLLM
from orchestra_nb._decompose import decompose
from orchestra_nb.llm import ScriptedLLM

RECORDING = ROOT / "notebooks" / "recordings" / "market_research.json"
MARKET_GOAL = "Write a market research report on solid-state batteries for EV makers"
WORKERS = 5


class TimedReplay(ReplayLLM):
    """The replay, noting when each streamed piece reached the planner."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pieces: list[tuple[float, str]] = []

    def stream(self, messages: Any, *, schema: Any = None, **params: Any) -> Any:
        answer = super().stream(messages, schema=schema, **params)
        pieces = self.pieces

        class Noted:
            def __aiter__(self) -> Noted:
                return self

            async def __anext__(self) -> str:
                piece = await answer.__anext__()
                pieces.append((time.perf_counter(), piece))
                return piece

            @property
            def completion(self) -> Any:
                return answer.completion

            async def aclose(self) -> None:
                await answer.aclose()

            async def __aenter__(self) -> Noted:
                return self

            async def __aexit__(self, *exc: object) -> None:
                await answer.aclose()

        return Noted()


def generated_plan(n: int, seed: int) -> str:
    """A plan of ``n`` tasks written the way models write them: prose, then fenced JSON."""
    rng = random.Random(seed)
    gather = max(2, n // 4)
    synth = max(1, n // 5)
    analyse = n - gather - synth - 1
    tasks: list[dict[str, Any]] = []

    def add(kind: str, deps: list[str], what: str) -> str:
        tid = f"task_{len(tasks) + 1}"
        tasks.append({
            "id": tid, "name": f"{kind} {len(tasks) + 1}",
            "description": f"{what} Use the inputs given; cite figures and say how sure you are.",
            "dependencies": deps, "estimated_time": rng.randint(5, 30), "kind": "llm",
        })  # fmt: skip
        return tid

    sources = [add("Research", [], f"Collect sources on aspect {i + 1} of the topic.")
               for i in range(gather)]  # fmt: skip
    analyses = [add("Analyse", sorted(rng.sample(sources, rng.randint(1, 2))),
                    f"Analyse the material for question {i + 1}.")
                for i in range(analyse)]  # fmt: skip
    syntheses = [add("Synthesise", sorted(rng.sample(analyses, min(3, len(analyses)))),
                     f"Draw conclusions for section {i + 1}.") for i in range(synth)]  # fmt: skip
    last = add("Report", syntheses, "Write the final report from the sections.")
    tasks[-1]["kind"] = "report"
    del last
    lines = ",\n".join("  " + json.dumps(t) for t in tasks)
    return f'Here is a plan in {n} steps.\n\n```json\n{{"subtasks": [\n{lines}\n]}}\n```\n'


async def record(path: Path, goal: str, answer: str, n: int) -> None:
    recorder = ReplayLLM(path, record=ScriptedLLM([answer], model="bench-planner"))
    await decompose(goal, llm=recorder, max_tasks=n, functions=_offered())


def _offered() -> dict[str, str] | None:
    from orchestra_nb._actions import registered_functions

    return {name: entry.summary for name, entry in registered_functions().items()} or None


def latency_of(task: onb.Task, seed: int, scale: float) -> float:
    """Seconds an LLM task takes: drawn from 2-8 s per task and repeat (0 for other kinds)."""
    if task.kind != "llm":
        return 0.0
    return random.Random(f"{seed}:{task.id}").uniform(2.0, 8.0) * scale


async def once(
    plan: dict[str, Any], *, stream: bool, seed: int, scale: float, tps: float, first: float
) -> tuple[float, float, list[float]]:
    llm = TimedReplay(plan["recording"], tokens_per_second=tps / scale, first_token=first * scale)
    seen: list[tuple[float, onb.Event]] = []

    async def runner(task: onb.Task, inputs: dict[str, Any]) -> str:
        await asyncio.sleep(latency_of(task, seed, scale))
        return f"{task.id} done"

    started = time.perf_counter()
    run = await onb.plan_and_run(
        plan["goal"],
        llm=llm,
        runner=runner,
        max_workers=WORKERS,
        stream=stream,
        max_tasks=plan["max_tasks"],
        on_event=lambda e: seen.append((time.perf_counter(), e)),
    )
    total = time.perf_counter() - started
    assert run.ok, (run.state, run.errors)
    assert len(run.status) == plan["size"]
    starts = {e.task_id: t for t, e in seen if e.kind == "started"}
    first_start = min(starts.values()) - started
    delays = dispatch_delays(run.graph, llm.pieces, seen) if stream else []
    return total, first_start, delays


def dispatch_delays(
    graph: onb.TaskGraph, pieces: list[tuple[float, str]], seen: list[tuple[float, onb.Event]]
) -> list[float]:
    """For tasks that could start the moment their object was whole: that moment to start."""
    reader = PlanStream()
    whole: dict[str, float] = {}
    for at, piece in pieces:
        for task in reader.feed(piece):
            whole.setdefault(task.id, at)
    starts = {e.task_id: t for t, e in seen if e.kind == "started"}
    ends = {e.task_id: t for t, e in seen if e.kind in ("done", "cached")}
    delays = []
    for tid, at in whole.items():
        deps_done = all(ends.get(d, float("inf")) <= at for d in graph.tasks[tid].dependencies)
        busy = sum(1 for t, s in starts.items() if s <= at and ends.get(t, float("inf")) > at)
        if deps_done and busy < WORKERS and tid in starts:
            delays.append(starts[tid] - at)
    return delays


async def prepare(folder: Path) -> list[dict[str, Any]]:
    import runpy

    runpy.run_path(str(ROOT / "notebooks" / "market_research.py"))  # registers its functions
    plans = [{"name": "market research (9)", "goal": MARKET_GOAL, "recording": RECORDING,
              "size": 9, "max_tasks": 12}]  # fmt: skip
    for n in (20, 60):
        goal = f"Write a {n}-part study of grid-scale storage markets"
        path = folder / f"plan{n}.json"
        await record(path, goal, generated_plan(n, seed=n), n)
        plans.append({"name": f"generated ({n})", "goal": goal, "recording": path, "size": n,
                      "max_tasks": n})  # fmt: skip
    return plans


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every delay by this")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tps", type=float, default=40.0, help="tokens a second")
    parser.add_argument("--first-token", type=float, default=0.5, help="seconds")
    parser.add_argument("--only", help="run only the plans whose name contains this")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plans = asyncio.run(prepare(Path(tmp)))
        for plan in plans:
            if args.only and args.only not in plan["name"]:
                continue
            streamed, planned, firsts, firsts_planned, delays = [], [], [], [], []
            speedups = []
            for seed in range(args.repeats):
                got = {}
                for stream in (True, False):
                    got[stream] = asyncio.run(
                        once(plan, stream=stream, seed=seed, scale=args.scale, tps=args.tps,
                             first=args.first_token)
                    )  # fmt: skip
                (total, first, delay), (total_p, first_p, _) = got[True], got[False]
                streamed.append(total)
                planned.append(total_p)
                firsts.append(first)
                firsts_planned.append(first_p)
                delays.extend(delay)
                speedups.append(total_p / total)
            s, p = statistics.median(streamed), statistics.median(planned)
            rows.append([
                plan["name"],
                f"{p:.2f}",
                f"{s:.2f}",
                f"{statistics.median(speedups):.2f}×",
                f"{min(speedups):.2f}-{max(speedups):.2f}",
                f"{statistics.median(firsts_planned):.2f}",
                f"{statistics.median(firsts):.2f}",
                f"{statistics.median(delays) * 1000:.1f}" if delays else "-",
                f"{max(delays) * 1000:.1f}" if delays else "-",
                len(delays),
            ])  # fmt: skip
            print(f"{plan['name']}: plan-then-run {planned}, streamed {streamed}", flush=True)
    headers = ["plan", "plan, then run (s)", "streamed (s)", "speed-up", "range",
               "first start, planned (s)", "first start, streamed (s)",
               "dispatch median (ms)", "dispatch max (ms)", "n"]  # fmt: skip
    title = (
        f"Streamed planning and execution: {args.tps:g} tokens/s after {args.first_token:g} s, "
        f"LLM tasks 2-8 s, max_workers={WORKERS}; medians of {args.repeats} repeats"
        + (f"; every delay x{args.scale:g} (times are as measured)" if args.scale != 1 else "")
    )
    print()
    print(table(headers, rows, title=title))
    print("targets: speed-up >= 1.3x on market research; dispatch <= 50 ms")


if __name__ == "__main__":
    main()
