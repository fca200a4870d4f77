"""A process that runs a plan with an approval gate; the tests kill it while it waits.

Usage: python -m tests.support.approval_child STORE_URL RUN_ID LOG_FILE
Every execution appends "<task id>" to LOG_FILE when it starts.
"""

from __future__ import annotations

import asyncio
import sys

import orchestra_nb as onb


def graph() -> onb.TaskGraph:
    return onb.TaskGraph(
        [
            onb.Task("collect"),
            onb.Task("side"),
            onb.Task("costly", dependencies=("collect",), approval=True),
            onb.Task("report", dependencies=("costly", "side")),
        ],
        goal="approval test",
    )


def make_runner(log: str):
    def runner(task: onb.Task, inputs: dict) -> str:  # sync: the engine runs it in a thread
        with open(log, "a") as fh:
            fh.write(task.id + "\n")
        return f"{task.id}:" + ",".join(sorted(inputs))

    return runner


async def main(store: str, run_id: str, log: str) -> None:
    # the runner from the module by its import name, as the resuming test sees it (the
    # runner's name is part of the cache key; here this file is only "__main__")
    from tests.support.approval_child import make_runner as importable

    run = onb.start(graph(), runner=importable(log), store=store, run_id=run_id)
    await run  # waits for an approval that never comes: the test kills this process


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
