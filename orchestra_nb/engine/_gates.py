"""Approval gates: tasks that wait for a person before they start.

A task is *gated* when its plan says so (``"approval": true``), when the run's
``approve=`` picks it (task ids, a kind such as ``"llm"``, ``"all"``, or a
predicate on the task), or when it was awaiting approval as an earlier run of
the same id stopped (``resume``). A gated task whose dependencies are done is
held by the scheduler — it takes no slot, other branches keep running — and its
status is ``awaiting_approval``. Then one of:

* ``run.approve(id)`` (or the widget's button) releases it: it is queued;
* ``run.reject(id, reason)`` skips it and its descendants;
* ``orchestra-nb approve RUN TASK`` / ``reject`` from another process writes the
  decision into the run's record (``record_decision``); the running driver reads
  decisions every ``POLL_EVERY`` seconds while something awaits approval, and a
  later ``resume`` honours them;
* ``run.edit_then_approve(id, **fields)`` changes the task first: the edited plan
  is applied as a revision (``_revisions``: once nothing runs, keys recomputed, its
  descendants follow the edit), and the edited task starts without asking again;
* with ``approval_timeout``, a task nobody decided on in time is rejected
  ("approval timed out after N s"): it and its descendants are
  skipped, or a revision is asked for with ``on_failure="replan"``.

A task approved (or rejected) in this run stays so when a revision keeps it
unchanged; a revision that changes it asks again.

The waiting state is written to the run's task records as it happens, so after
a kernel restart ``resume`` shows the same tasks awaiting approval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from .._errors import RunError, StoreError
from .._kinds import FINAL_STATUSES, KINDS

if TYPE_CHECKING:
    from .._plan import Task, TaskGraph
    from ..store import ResultStore
    from ._driver import Driver
    from ._state import RunState

POLL_EVERY = 1.0  # seconds between reads of decisions other processes wrote


class Admission(Protocol):
    """Decides, as a task is about to start, whether it may (a budget does this).

    An admission may also have ``async prepare(graph)``, awaited once before the
    first task is handed out (to load what ``refuse`` needs without holding up
    the event loop later)."""

    def refuse(self, task: Task, state: RunState) -> str | None:
        """None to let the task start, or a one-line reason it may not."""
        ...


Approve = str | Iterable[str] | Callable[["Task"], bool] | None
"""Which tasks need approval: ``"all"``, a kind (``"llm"``, ``"python"``, ``"report"``),
task ids, a predicate on the task, or None (only tasks whose plan says ``approval``)."""


def admit(driver: Driver, tid: str) -> bool:
    """Whether a task just handed out may start under the run's ``Admission`` (a budget).

    Refused with approval gates on, it awaits a person (who may let it go over);
    otherwise it and its descendants are skipped with the reason, which becomes the
    run's error.
    """
    assert driver.admission is not None
    assert driver.sched is not None
    reason = driver.admission.refuse(driver.graph.tasks[tid], driver.state)
    if reason is None:
        return True
    if driver.approve is not None:
        driver.sched.defer(tid)
        driver.approvals.announce(reason)
    else:
        for other in driver.sched.cancel(tid):
            driver.finish(other, "skipped", error=f"{tid!r} was not started: {reason}")
        driver.finish(tid, "skipped", error=reason)
        if driver.state.error is None:
            driver.state.error = reason
    return False


def gated_ids(graph: TaskGraph, approve: Approve) -> set[str]:
    """The tasks of ``graph`` that need approval under ``approve`` (plan fields included)."""
    return {tid for tid, task in graph.tasks.items() if needs_approval(task, approve)}


def needs_approval(task: Task, approve: Approve) -> bool:
    """Whether one task needs approval under ``approve`` (plan fields included)."""
    if task.approval:
        return True
    if approve is None:
        return False
    if callable(approve):
        return bool(approve(task))
    if isinstance(approve, str):
        return approve == "all" or approve == task.kind or approve == task.id
    return task.id in set(approve)


def check_approve(graph: TaskGraph, approve: Approve) -> Approve:
    """``approve`` as given, or ``RunError`` naming what it selects that does not exist."""
    if approve is None or callable(approve):
        return approve
    if isinstance(approve, str):
        if approve == "all" or approve in KINDS or approve in graph:
            return approve
        kinds = ", ".join(KINDS)
        raise RunError(
            f"approve={approve!r} is neither 'all', a kind ({kinds}) nor a task of this plan"
        )
    ids = [str(tid) for tid in approve]
    unknown = [tid for tid in ids if tid not in graph]
    if unknown:
        raise RunError(f"approve names unknown task(s): {', '.join(map(repr, unknown))}")
    return ids


def parse_approve(text: str) -> str | list[str]:
    """``approve`` as a person types it (``--approve``): ``all``, a kind, or task ids
    separated by commas. ``RunError`` for an empty one; ids are checked against the
    plan when the run starts."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        kinds = ", ".join(KINDS)
        raise RunError(f"approve needs 'all', a kind ({kinds}) or task ids separated by commas")
    if len(words) == 1 and (words[0] == "all" or words[0] in KINDS):
        return words[0]
    return words


def approve_record(approve: Approve) -> str | list[str] | None:
    """``approve`` as the run header keeps it (a predicate cannot be kept: resume then
    relies on the plan fields and the recorded waiting states)."""
    if approve is None or callable(approve):
        return None
    return approve if isinstance(approve, str) else sorted(approve)


def carried_decisions(records: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[bool, str]]:
    """Decisions written into task records: id -> (approved, reason)."""
    out = {}
    for tid, entry in records.items():
        decision = entry.get("decision")
        if decision in ("approved", "rejected"):
            out[tid] = (decision == "approved", str(entry.get("reason") or ""))
    return out


def still_awaiting(records: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Tasks a stopped run left awaiting approval, with no decision since."""
    return {
        tid
        for tid, entry in records.items()
        if entry.get("status") == "awaiting_approval" and "decision" not in entry
    }


async def record_decision(
    store: ResultStore, run_id: str, task_id: str, *, approved: bool, reason: str | None = None
) -> None:
    """Approve or reject a task of a run from outside it (another process, the CLI).

    The decision goes into the task's record: the process running the run picks
    it up within a second or two; a stopped run applies it when resumed.
    """
    record = await store.load_run(run_id)
    if record is None:
        raise RunError(f"no run {run_id!r} in the store {store.url}")
    entry = record.tasks.get(task_id)
    if entry is None and task_id not in (record.header.get("keys") or {}):
        raise RunError(f"run {run_id!r} has no task {task_id!r}")
    if entry is None or entry.get("status") != "awaiting_approval":
        waiting = sorted(still_awaiting(record.tasks))
        now = f"; awaiting approval: {', '.join(waiting)}" if waiting else ""
        state = (entry or {}).get("status", "not started")
        raise RunError(
            f"task {task_id!r} of run {run_id!r} is not awaiting approval ({state}){now}"
        )
    decided = {**entry, "decision": "approved" if approved else "rejected"}
    if reason:
        decided["reason"] = reason
    await store.save_run_tasks(run_id, {task_id: decided})


class Approvals:
    """The gates of one run: who waits, the decisions, their timeouts (module docstring).

    Belongs to a ``Driver``, which it asks to release or reject tasks; it owns the
    timeout timers and the task that reads decisions from the store.
    """

    def __init__(self, driver: Driver, *, timeout: float | None) -> None:
        self.driver = driver
        self.timeout = timeout
        self.waiting: set[str] = set()
        # approved in this run (also ahead of time), as the task was when approved: a
        # revision that keeps the task as it is does not ask again
        self.approved: dict[str, Task] = {}
        self.rejected: dict[str, Task] = {}  # likewise: a revision keeping one keeps its "no"
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._watcher: asyncio.Task[None] | None = None

    def gated(self, graph: TaskGraph, records: Mapping[str, Mapping[str, Any]]) -> set[str]:
        """The tasks of ``graph`` that wait for a decision: those ``approve`` and the plan
        pick, those a stopped run left waiting, less those approved since (or ahead)."""
        decided = carried_decisions(records)
        gated = gated_ids(graph, self.driver.approve) | still_awaiting(records)
        gated &= graph.tasks.keys()  # a revision may have removed a task left waiting
        gated -= {tid for tid, (approved, _) in decided.items() if approved}
        return {tid for tid in gated if self.approved.get(tid) != graph.tasks[tid]}

    def announce(self, reason: str | None = None) -> None:
        """Tasks the scheduler just held now await approval: say so and write it down.
        ``reason``: why, when it is not the plan's or the run's ``approve`` (a budget)."""
        driver = self.driver
        assert driver.sched is not None
        for tid in driver.sched.take_held():
            if driver.sched.state(tid) != "held":
                continue  # cancelled since it was held (a revision kept a rejection)
            self.waiting.add(tid)
            data = {"reason": reason} if reason else None
            driver.state.set_status(tid, "awaiting_approval", data=data)
            driver.records.task_changed(tid, driver.state.task_record(tid, "awaiting_approval"))
            loop = asyncio.get_running_loop()
            if self.timeout is not None:
                self._timers[tid] = loop.call_later(self.timeout, self._expired, tid)
            if self._watcher is None or self._watcher.done():
                self._watcher = loop.create_task(self._watch())

    def approve(self, tid: str) -> None:
        """Let a task awaiting approval (or a gated one not yet ready) run."""
        driver = self.driver
        sched = driver.sched
        status = driver.state.status.get(tid)
        if status is None:
            raise RunError(f"no task {tid!r} in run {driver.state.run_id!r}")
        self._check_not_edited(tid, status)
        if sched is None:  # the run is still preparing: approved ahead
            self.approved[tid] = driver.graph.tasks[tid]
            return
        if status == "awaiting_approval":
            self.approved[tid] = driver.graph.tasks[tid]
            self._forget(tid)
            sched.release(tid)
            driver.state.set_status(tid, "approved")
            entry = driver.state.task_record(tid, "ready")
            driver.records.task_changed(tid, {**entry, "decision": "approved"})
            driver.dispatch()
        elif status == "pending" and sched.is_gated(tid):
            self.approved[tid] = driver.graph.tasks[tid]
            sched.release(tid)  # approved ahead: it will not stop when ready
        else:
            raise RunError(f"task {tid!r} is not awaiting approval ({status})")

    def edit_then_approve(self, tid: str, fields: Mapping[str, Any]) -> None:
        """Change a task awaiting approval (or a gated one not yet ready), then let it run.

        The running plan is replaced by the edited one as a revision — applied once no
        task runs, like any revision, so the task's key and its descendants' follow the
        edit — and the edited task starts without asking again. ``PlanError`` for a
        field that cannot change or an edit that breaks the plan; nothing changes then.
        """
        driver = self.driver
        status = driver.state.status.get(tid)
        if status is None:
            raise RunError(f"no task {tid!r} in run {driver.state.run_id!r}")
        self._check_not_edited(tid, status)
        gated = driver.sched is None or driver.sched.is_gated(tid)
        if status != "awaiting_approval" and not (status == "pending" and gated):
            raise RunError(f"task {tid!r} is not awaiting approval ({status})")
        edited = driver.graph.copy()
        edited.update_task(tid, **fields)  # PlanError: unknown field, cycle, unknown dependency
        if edited.tasks[tid] == driver.graph.tasks[tid]:
            self.approve(tid)  # the edit changes nothing
            return
        before = self.approved.get(tid)
        self.approved[tid] = edited.tasks[tid]
        changes = ", ".join(sorted(fields))
        try:
            driver.replanning.revise(
                edited, f"task {tid!r} edited before approval ({changes})", source="edit"
            )
        except BaseException:
            if before is None:
                self.approved.pop(tid, None)
            else:
                self.approved[tid] = before
            raise
        self._forget(tid)  # decided: no timeout, no decision from elsewhere applies now

    def _check_not_edited(self, tid: str, status: str) -> None:
        """A task edited and approved waits, still held, for its edit to be applied."""
        if status == "awaiting_approval" and tid not in self.waiting and self.driver.sched:
            raise RunError(
                f"task {tid!r} was edited and approved: it starts once the edit is applied"
            )

    def reject(self, tid: str, reason: str | None = None) -> None:
        """Skip a task awaiting approval (or a gated one not yet ready) and its descendants."""
        driver = self.driver
        status = driver.state.status.get(tid)
        if status is not None:
            self._check_not_edited(tid, status)
        gated = driver.sched is not None and status is not None and driver.sched.is_gated(tid)
        if status != "awaiting_approval" and not (status == "pending" and gated):
            raise RunError(f"task {tid!r} is not awaiting approval ({status})")
        self._forget(tid)
        self.rejected[tid] = driver.graph.tasks[tid]
        self._skip(tid, f"rejected: {reason}" if reason else "rejected")

    def apply_recorded(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Rejections recorded while the run was stopped (``orchestra-nb reject``) apply."""
        status = self.driver.state.status
        for tid, (approved, reason) in carried_decisions(records).items():
            if not approved and tid in status and status[tid] not in FINAL_STATUSES:
                self._skip(tid, f"rejected: {reason}" if reason else "rejected")

    def _skip(self, tid: str, error: str) -> None:
        """Skip a task that has not started, and its descendants; with
        ``on_failure="replan"`` a revised plan is asked for."""
        driver = self.driver
        assert driver.sched is not None
        for other in driver.sched.cancel(tid):
            driver.finish(other, "skipped", error=f"{tid!r} was rejected")
        driver.finish(tid, "rejected", error=error)
        driver.replanning.wants(tid, error)
        driver.dispatch()

    def _expired(self, tid: str) -> None:
        self._timers.pop(tid, None)
        if tid in self.waiting:
            self.reject(tid, f"approval timed out after {self.timeout:g} s")

    def reset(self) -> None:
        """Forget who waits (a revision is being applied: its scheduler holds them again,
        and ``announce`` starts their clocks afresh)."""
        for tid in list(self.waiting):
            self._forget(tid)

    def _forget(self, tid: str) -> None:
        self.waiting.discard(tid)
        timer = self._timers.pop(tid, None)
        if timer is not None:
            timer.cancel()

    async def _watch(self) -> None:
        """Apply decisions other processes wrote, while something awaits approval."""
        while self.waiting:
            await asyncio.sleep(POLL_EVERY)
            try:
                decisions = await self.driver.records.decisions()
            except StoreError:
                continue  # the store is the run's concern; try again next time
            for tid, (approved, reason) in decisions.items():
                if tid in self.waiting:
                    if approved:
                        self.approve(tid)
                    else:
                        self.reject(tid, reason or None)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        if self._watcher is not None:
            self._watcher.cancel()
