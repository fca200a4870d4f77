"""Functions the Dask tests run on cluster workers (importable there by module name)."""

from __future__ import annotations

import os
import time

import orchestra_nb as onb


def _log(params: dict, line: str) -> None:
    """Append to the log file the test named in the task's params (workers started earlier
    than the test, so an environment variable would not reach them)."""
    path = params.get("log")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


@onb.task_function(version="1")
def crunch(task, inputs, params):
    """About 20 ms of numpy work, and the worker that did it."""
    import numpy as np

    _log(params, f"start {task.id} {os.getpid()}")
    seed = int(task.id.split("_")[-1])
    a = np.random.default_rng(seed).random((160, 160))
    for _ in range(6):
        a = a @ a
        a /= np.abs(a).max()
    value = {"sum": float(a.sum()), "worker": os.getpid(), "inputs": sorted(inputs)}
    _log(params, f"end {task.id} {os.getpid()}")
    return value


@onb.task_function(version="1")
def nap(task, params):
    """Sleep for params['seconds'], logging start and end."""
    _log(params, f"start {task.id} {os.getpid()}")
    time.sleep(params.get("seconds", 1.0))
    _log(params, f"end {task.id} {os.getpid()}")
    return task.id
