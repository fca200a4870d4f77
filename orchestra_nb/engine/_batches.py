"""Tasks waiting in a provider's Batch API: they hold no slot, and a resume finds them.

An LLM task sent through a batch (``llm_batch=True``) may wait minutes or hours
for its answer. While it waits it is ``batched``: the scheduler *parks* it — it
keeps running but frees its worker slot, so a whole ready front goes into one
batch — and its ticket (batch id, custom id) goes into its task record, so a
resumed run waits for the same batch instead of sending the request again.
``Batches`` is what the task's context calls (the ``BatchHooks`` of ``_actions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._driver import Driver


class Batches:
    """The batch side of one driver (see the module docstring)."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver

    def park(self, tid: str) -> None:
        """Task ``tid`` waits for a provider batch: its slot goes to another task."""
        driver = self.driver
        sched = driver.sched
        if sched is not None and driver.has_worker(tid) and sched.state(tid) == "running":
            sched.park(tid)
            driver.dispatch()

    def batched(self, tid: str, attempt: int, ticket: Mapping[str, str]) -> None:
        """Task ``tid``'s request is in a provider batch: show it, and record the ticket so
        that ``resume`` waits for this batch instead of sending the request again."""
        driver = self.driver
        state = driver.state
        if state.status.get(tid) not in ("running", "batched"):
            return  # cancelled meanwhile
        state.batches[tid] = dict(ticket)
        state.set_status(tid, "batched", attempt=attempt, data=ticket)
        driver.records.task_changed(tid, state.task_record(tid, "batched"))

    def carried(self, tid: str, attempt: int) -> Mapping[str, Any] | None:
        """The batch an earlier run of this id left the task waiting in (first attempt of
        a resumed run only; the batch client checks the ticket)."""
        driver = self.driver
        if attempt != 1 or not driver.carried.tasks:
            return None
        entry = driver.carried.tasks.get(tid)
        if not entry or entry.get("status") not in ("batched", "cancelled"):
            return None
        return entry.get("batch")
