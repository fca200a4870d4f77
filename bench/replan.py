"""What a replan adds to a run: one LLM round trip, plus how much?

A plan whose second step fails for good (data -> chart -> report) runs with
``on_failure="replan"`` against the loopback OpenAI-protocol server (the real
``openai`` client; the server answers after ``--latency`` seconds with a revised
plan: data -> table -> report). From the run's own events it measures the time
from the failure to the first task of the revised plan starting, and compares it
with one bare LLM round trip of the same replanning prompt (same client, same
server, measured alone; the client is connected already in both, as it is after
a run's own LLM tasks). The difference is what replanning costs beyond the
model: building the request, parsing and validating the answer off the loop,
keying the revised plan, looking up stored results, and a new scheduler.

For scale it also times the same failing run with ``on_failure="skip"`` (it
stops at the failure) and the revised plan run directly (the work that remains
when nothing has to be replanned). Medians of ``--repeats`` runs, fresh memory
stores each time.

    python bench/replan.py [--latency 0 0.3] [--repeats 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from _common import ROOT, table

import orchestra_nb as onb
from orchestra_nb import OpenAILLM, Task, TaskGraph


def collect():
    return [3, 1, 2]


def chart(data):
    raise ValueError("the chart library is not installed")


def tabulate(data):
    return "| n |\n" + "\n".join(f"| {n} |" for n in data)


FUNCTIONS = {"collect": collect, "chart": chart, "table": tabulate}


def failing() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect data", kind="python", function="collect"),
            Task("chart", "Chart", kind="python", function="chart", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("chart",)),
        ],
        goal="a small report",
    )


REVISED_STEPS = {
    "subtasks": [
        {"id": "table", "name": "Table", "kind": "python", "function": "table",
         "dependencies": ["data"]},
        {"id": "report", "name": "Report", "kind": "report", "dependencies": ["table"]},
    ]
}  # fmt: skip


def revised() -> TaskGraph:
    return TaskGraph.from_plan(
        {"subtasks": [failing().tasks["data"].to_dict(), *REVISED_STEPS["subtasks"]]},
        goal="a small report",
    )


async def one_replan(url: str) -> tuple[float, float, float]:
    """(seconds from the failure to the revised plan's first start, the LLM round trip
    inside it as the replanner saw it, the whole run)."""
    from orchestra_nb._replan import replan

    llm = OpenAILLM("bench", base_url=url, api_key="k")
    await llm.complete("warm up")  # connected, as after the run's own LLM tasks
    inside: list[float] = []

    async def timed(request):  # the default replanner, with its LLM call timed
        started = time.perf_counter()
        graph = await replan(request, llm=llm, functions={n: n for n in FUNCTIONS})
        inside.append(time.perf_counter() - started)
        return graph

    marks: dict[str, float] = {}

    def note(event: onb.Event) -> None:
        if event.kind == "failed" and event.task_id == "chart":
            marks["failed"] = time.perf_counter()
        if event.kind == "started" and event.task_id == "table":
            marks["resumed"] = time.perf_counter()

    started = time.perf_counter()
    run = await onb.run(
        failing(), functions=FUNCTIONS, store="memory://", on_failure="replan",
        replanner=timed, on_event=note, progress=False,
    )  # fmt: skip
    total = time.perf_counter() - started
    assert run.ok, run.errors
    await llm.aclose()
    return marks["resumed"] - marks["failed"], inside[0], total


async def bare_round_trip(url: str) -> float:
    """One completion of the same replanning prompt, nothing else."""
    from orchestra_nb._decompose import PLAN_SCHEMA
    from orchestra_nb._replan import replanning_messages
    from orchestra_nb.engine import RevisionRequest

    request = RevisionRequest(
        goal="a small report",
        graph=failing(),
        finished={"data": "[ 3, 1, 2 ]"},
        failed={"chart": "ValueError: the chart library is not installed"},
        reason="task 'chart': ValueError: the chart library is not installed",
        number=1,
    )
    messages = replanning_messages(request, functions={n: n for n in FUNCTIONS})
    llm = OpenAILLM("bench", base_url=url, api_key="k")
    await llm.complete(messages, schema=PLAN_SCHEMA)  # connection set up, as in the run
    started = time.perf_counter()
    await llm.complete(messages, schema=PLAN_SCHEMA)
    elapsed = time.perf_counter() - started
    await llm.aclose()
    return elapsed


async def plain(graph: TaskGraph) -> float:
    started = time.perf_counter()
    await onb.run(graph, functions=FUNCTIONS, store="memory://", progress=False)
    return time.perf_counter() - started


def main() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.support.llm_server import LLMServer, Reply

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.3])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    answer = json.dumps(REVISED_STEPS)
    rows = []
    for latency in args.latency:
        with LLMServer(lambda request: Reply(content=answer), latency=latency) as server:
            gaps, insides, totals, trips, skips, directs = [], [], [], [], [], []
            for _ in range(args.repeats):
                gap, inside, total = asyncio.run(one_replan(server.url))
                gaps.append(gap)
                insides.append(inside)
                totals.append(total)
                trips.append(asyncio.run(bare_round_trip(server.url)))
                skips.append(asyncio.run(plain(failing())))
                directs.append(asyncio.run(plain(revised())))
        med = statistics.median
        gap, trip = med(gaps), med(trips)
        rows.append(
            [
                f"{latency * 1000:.0f}",
                f"{trip * 1000:.1f}",
                f"{med(insides) * 1000:.1f}",
                f"{gap * 1000:.1f}",
                f"{(gap - trip) * 1000:.1f}",
                f"{(med(totals) - med(directs)) * 1000:.1f}",
                f"{med(skips) * 1000:.1f}",
                f"{med(directs) * 1000:.1f}",
                f"{med(totals) * 1000:.1f}",
            ]
        )
    print(
        table(
            [
                "server ms",
                "LLM round trip ms",
                "replanner call ms",
                "failure→revised start ms",
                "beyond round trip ms",
                "replan run − revised plan ms",
                "skip run ms",
                "revised plan ms",
                "replan run ms",
            ],
            rows,
            title=f"What a replan adds (medians of {args.repeats})",
        )
    )


if __name__ == "__main__":
    main()
