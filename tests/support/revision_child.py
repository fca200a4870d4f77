"""A process whose run is revised, then killed while the revised plan runs.

Usage: python -m tests.support.revision_child STORE_URL RUN_ID LOG_FILE
Every execution appends "<task id>" to LOG_FILE. In this process the revised
plan's ``table`` step hangs (``REVISION_CHILD_HANG`` is set), so the test can kill
it after the revision is recorded; the resuming test runs the same functions
without hanging.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

import orchestra_nb as onb


def plan() -> onb.TaskGraph:
    return onb.TaskGraph(
        [
            onb.Task("data", "Collect data", kind="python", function="collect"),
            onb.Task("chart", "Chart", kind="python", function="chart", dependencies=("data",)),
            onb.Task("report", "Report", kind="report", dependencies=("chart",)),
        ],
        goal="a report that survives its process",
    )


def revised() -> onb.TaskGraph:
    return onb.TaskGraph(
        [
            onb.Task("data", "Collect data", kind="python", function="collect"),
            onb.Task("table", "Table", kind="python", function="table", dependencies=("data",)),
            onb.Task("report", "Report", kind="report", dependencies=("table",)),
        ],
        goal="a report that survives its process",
    )


def functions(log: str) -> dict:
    def note(tid: str) -> None:
        with open(log, "a") as fh:
            fh.write(tid + "\n")

    def collect():
        note("data")
        return [3, 1, 2]

    def chart(data):
        note("chart")
        raise ValueError("the chart library is not installed")

    def table(data):
        note("table")
        if os.environ.get("REVISION_CHILD_HANG"):
            time.sleep(120)  # killed before this ends
        return "| n |\n" + "\n".join(f"| {n} |" for n in data)

    return {"collect": collect, "chart": chart, "table": table}


async def replanner(request) -> onb.TaskGraph:
    return revised()


async def main(store: str, run_id: str, log: str) -> None:
    os.environ["REVISION_CHILD_HANG"] = "1"
    run = onb.start(
        plan(),
        functions=functions(log),
        store=store,
        run_id=run_id,
        on_failure="replan",
        replanner=replanner,
    )
    await run  # the test kills this process while "table" hangs


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
