"""The engine: runs a TaskGraph on the running event loop with a bounded pool.

Who owns what (each module opens by saying more):

- ``_options``: ``RunOptions``, the one place run options are validated;
- ``_state``: ``RunState``, the live per-task record of a run, and ``Progress``;
- ``_driver``: ``Driver``, which owns the ``Scheduler`` and every asyncio task it
  starts — workers, retries and backoff, cancellation, the end of the run;
- ``_attempts``: ``Attempts``, one attempt of a task — timeouts, abandoned tasks,
  in-flight deduplication of identical tasks;
- ``_records``: ``RunRecords``, the run's only store I/O — cached lookups, commits,
  the run header, batched task records and the lease;
- ``_gates``: approval gates — who waits, decisions (also from other processes),
  timeouts;
- ``_revisions``: replanning — revision requests, the replanner, diffs, applying a
  revised plan;
- ``_growth``: plans that grow while they run (a streaming planner);
- ``_batches``: tasks waiting in a provider's Batch API;
- ``_run``: ``Run``, the read-only handle users hold;
- ``_api``: ``start`` and ``run``;
- ``_resume``: ``resume`` and ``start_resume``;
- ``_history``: ``history`` and ``rollback`` — earlier runs read from a store;
- ``_orchestrator``: ``Orchestrator``, shared defaults for repeated runs;
- ``_progress``: the terminal progress bar.

The engine imports no cluster code: tasks run through ``Actions``, which hand
them to an ``Executor`` (local threads, or a ``DaskExecutor`` given by the user).
"""

from ._api import new_run_id, run, start
from ._gates import Admission, parse_approve, record_decision
from ._history import history, rollback
from ._options import MODES, RunOptions
from ._orchestrator import Orchestrator
from ._resume import resume, start_resume
from ._revisions import Revision, RevisionRequest
from ._run import Run
from ._state import Progress

__all__ = [
    "MODES",
    "Admission",
    "Orchestrator",
    "Progress",
    "Revision",
    "RevisionRequest",
    "Run",
    "RunOptions",
    "history",
    "new_run_id",
    "parse_approve",
    "record_decision",
    "resume",
    "rollback",
    "run",
    "start",
    "start_resume",
]
