"""A process that runs (or resumes) a 50-task graph; the resume tests kill it mid-run.

Usage: python -m tests.support.resume_child run|resume STORE_URL RUN_ID LOG_FILE
Every execution appends "<task id>" to LOG_FILE when it starts.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys

import orchestra_nb as onb


def graph() -> onb.TaskGraph:
    rng = random.Random(50)
    tasks = []
    for i in range(50):
        parents = rng.sample(range(i), k=min(i, rng.randint(0, 3))) if i else []
        tasks.append(onb.Task(f"t{i}", dependencies=tuple(f"t{p}" for p in sorted(parents))))
    return onb.TaskGraph(tasks, goal="resume test")


LOG = os.environ.get("ORCHESTRA_TEST_LOG", "")


def log_start(task_id: str) -> None:
    with open(LOG, "a") as fh:
        fh.write(task_id + "\n")


async def runner(task: onb.Task, inputs: dict) -> str:
    log_start(task.id)  # a few bytes: not worth a thread hop
    await asyncio.sleep(0.05)
    return f"{task.id}:" + ",".join(sorted(inputs))


async def main(mode: str, store: str, run_id: str) -> None:
    if mode == "run":
        await onb.run(graph(), runner=runner, store=store, run_id=run_id, max_workers=3)
    else:
        run = await onb.resume(run_id, runner=runner, store=store)
        print(run.state, len(run.results))


if __name__ == "__main__":
    mode, store, run_id, log = sys.argv[1:5]
    os.environ["ORCHESTRA_TEST_LOG"] = log
    LOG = log
    asyncio.run(main(mode, store, run_id))
