"""LLM fan-out: 16 independent LLM tasks against a loopback OpenAI-protocol server.

The server answers after a fixed latency (300 ms). With max_workers=8 the 16
calls should take about two latencies; pipeline mode takes sixteen. Runs the
real openai client; each repeat uses a fresh memory store so nothing is cached.

    python bench/llm_fanout.py [--latency 0.3] [--tasks 16] [--workers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from _common import ROOT, table

import orchestra_nb as onb
from orchestra_nb import OpenAILLM, Task, TaskGraph


def main() -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from tests.support.llm_server import LLMServer

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.3)
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    graph = TaskGraph(
        [Task(f"q{i}", f"Question {i}", f"Answer question {i}") for i in range(args.tasks)],
        goal="LLM fan-out",
    )

    with LLMServer(latency=args.latency) as server:

        def once(mode: str) -> float:
            async def go() -> float:
                llm = OpenAILLM("bench", base_url=server.url, api_key="k")
                started = time.perf_counter()
                run = await onb.run(
                    graph,
                    llm=llm,
                    mode=mode,
                    max_workers=args.workers,
                    store="memory://",
                    progress=False,
                )
                elapsed = time.perf_counter() - started
                assert run.ok, run.errors
                await llm.aclose()
                return elapsed

            return asyncio.run(go())

        once("dag")  # warm up imports and connections
        dag = statistics.median(once("dag") for _ in range(args.repeats))
        pipeline = statistics.median(once("pipeline") for _ in range(max(1, args.repeats // 2)))
    ideal = -(-args.tasks // args.workers) * args.latency
    rows = [
        ["dag", args.workers, dag, dag / ideal, ""],
        ["pipeline", 1, pipeline, pipeline / ideal, ""],
    ]
    rows[0][4] = f"{pipeline / dag:.1f}× faster than pipeline"
    print(
        table(
            ["mode", "workers", "seconds (median)", "÷ ideal", ""],
            rows,
            title=f"{args.tasks} LLM tasks, {args.latency * 1000:.0f} ms latency; "
            f"ideal = {ideal:.2f} s",
        )
    )


if __name__ == "__main__":
    main()
