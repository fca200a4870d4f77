"""The driver: executes one TaskGraph on the running event loop with a bounded pool.

The pure ``Scheduler`` decides which task runs next; the driver does the
waiting around it and owns every asyncio task it starts (executing an attempt —
timeouts, in-flight deduplication, abandoned tasks — is ``_attempts``'). One run
goes::

    prepare: cache keys ─► stored results (cached) ─► header ─► Scheduler
       │
       ▼
    dispatch ◄──────────────────────────────────────────────────────────────┐
       │ get_ready(): the best tasks the pool has room for                   │
       ▼                                                                     │
    worker: execute (timeout) ─► commit to the store ─► done(id) ───────────┤
       │ error                                                               │
       ├─► retries left: slot freed, backoff timer ─► requeue ──────────────┘
       └─► failed: descendants skipped (fail_fast: everything cancelled)

    cancel(id) · cancel() · run_timeout · store failure ─► stop dispatching ─► wind down

Completions drive dispatch directly: there is no polling loop. A task that
times out or is cancelled gives its slot back at once even if its code ignores
the cancellation (it is *abandoned*: cancelled, no longer waited for, and
collected at the end). Identical tasks in flight together (same cache key) run
once. A result is committed before its task is reported done; if the store
fails, the run stops starting tasks, keeps what it computed in memory
(``pending_writes``) and ends with ``StoreUnavailableError`` — a store failure
is never charged to a task.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .._actions import TaskContext
from .._errors import (
    ConfigError,
    PlanError,
    ReplayMissError,
    RunError,
    StoreError,
    StoreUnavailableError,
    one_line,
)
from .._events import STATUS_AFTER
from .._kinds import FINAL_STATUSES
from .._scheduler import Scheduler
from ._attempts import Attempts
from ._gates import (
    Approvals,
    Approve,
    approve_record,
    carried_decisions,
    check_approve,
    gated_ids,
    still_awaiting,
)
from ._selection import Carried, forced_ids, selection

if TYPE_CHECKING:
    from .._actions import Actions
    from .._plan import TaskGraph
    from ._options import RunOptions
    from ._records import RunRecords
    from ._state import RunState

log = logging.getLogger("orchestra_nb")

#: Errors that will not go away by trying again.
PERMANENT_ERRORS = (ConfigError, PlanError, ReplayMissError, RunError, StoreError, TypeError)
ABANDON_GRACE = 1.0  # seconds a cancelled task may take to honour cancellation at the end


class Driver:
    """Executes a graph for one run (see the module docstring)."""

    def __init__(
        self,
        graph: TaskGraph,
        state: RunState,
        *,
        options: RunOptions,
        actions: Actions,
        records: RunRecords,
        refresh: bool | Iterable[str] = False,
        only: Iterable[str] | None = None,
        carried: Carried | None = None,
        approve: Approve = None,
    ) -> None:
        self.graph = graph
        self.state = state
        self.options = options
        self.actions = actions
        self.records = records
        self.carried = carried or Carried()
        # task id -> (key, value, meta) computed but not committed (the store failed)
        self.pending_writes: dict[str, tuple[str, Any, dict[str, Any]]] = {}
        self.store_error: StoreError | None = None
        self.cancelled = False  # the user (or whoever awaits the run) cancelled it
        self._tasks = graph.tasks
        self._forced = forced_ids(graph, refresh)
        self._only = None if only is None else selection(graph, only)
        self.sched: Scheduler | None = None
        self.approve = check_approve(graph, approve)
        self.approvals = Approvals(self, timeout=options.approval_timeout)
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._attempts = Attempts(actions)
        self._finished: asyncio.Future[None] | None = None
        records.on_unavailable = self._store_failed

    # --- the whole run -----------------------------------------------------------------

    async def drive(self) -> None:
        """Run to the end. Raises what stops the run itself (a lease held elsewhere, an
        unreachable store, a cancelled caller); task failures are outcomes, not errors."""
        state = self.state
        state.state = "running"
        state.started_at = time.time()
        state.t0 = time.monotonic()
        self._loop = asyncio.get_running_loop()
        self._finished = self._loop.create_future()
        try:
            await self.records.take_lease()
            await self._prepare()
            self.dispatch()
            await self._wait_for_the_end()
        except asyncio.CancelledError:
            # run.cancel(), or whoever awaits the run was cancelled (an interrupted cell)
            external = not self.cancelled
            self.cancelled = True
            self.cancel_all("run cancelled")
            await self._wind_down()
            if external:
                raise
            return
        except BaseException:
            self.cancel_all("run aborted")
            await self._wind_down()
            raise
        await self._wind_down()
        if self.store_error is not None:
            raise StoreUnavailableError(
                f"{self.store_error}; {len(self.pending_writes)} computed result(s) kept in "
                f"memory: run `await orchestra_nb.resume(run)` when the store is back"
            )

    async def _wait_for_the_end(self) -> None:
        assert self._finished is not None
        limit = self.options.run_timeout
        if limit is None:
            await self._finished
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._finished), limit)
        except TimeoutError:
            self.state.error = f"run timed out after {limit:g} s"
            self.cancel_all("run timed out")

    async def _prepare(self) -> None:
        graph, state, actions = self.graph, self.state, self.actions
        await actions.prepare(graph)
        state.keys = keys = actions.cache_keys(graph)
        forced = self._forced
        wanted = {k for tid, k in keys.items() if tid not in forced}
        found = await self.records.lookup(wanted)
        await self._recommit(found)
        completed = [tid for tid, k in keys.items() if k in found and tid not in forced]
        for tid in completed:
            state.results[tid] = found[keys[tid]]
        await self.records.save_header(self._header())

        tasks, options = graph.tasks, self.options
        resources = {}
        for tid, t in tasks.items():
            wants = dict(t.resources) or ({t.kind: 1} if t.kind in options.pools else {})
            if wants:
                resources[tid] = wants
        decided = carried_decisions(self.carried.tasks)
        gated = gated_ids(graph, self.approve) | still_awaiting(self.carried.tasks)
        gated -= {tid for tid, (approved, _) in decided.items() if approved}
        gated -= self.approvals.ahead
        retries = {tid: options.task_retries(t) for tid, t in tasks.items()}
        if len(set(retries.values())) == 1:
            retries = next(iter(retries.values()))  # one number for all: no per-task list
        self.sched = sched = Scheduler(
            {tid: t.dependencies for tid, t in tasks.items()},
            priority={tid: t.priority for tid, t in tasks.items() if t.priority is not None},
            durations=graph.durations(),
            resources=resources,
            pools=dict(options.pools),
            max_workers=options.workers,
            retries=retries,
            completed=completed,
            gated=gated,
        )
        state.emit("run_started", data={"tasks": len(state.status), "cached": len(completed)})
        carried = self.carried.tasks
        for tid in completed:
            previous = carried.get(tid, {}).get("status")
            self._finish(tid, "done" if previous == "done" else "cached", record=False)
        if self._only is not None:
            self._leave_unselected()
        for tid in tasks:
            if sched.state(tid) == "ready":
                state.set_status(tid, "queued")
        for tid, (approved, reason) in decided.items():
            if not approved and tid in tasks and state.status[tid] not in FINAL_STATUSES:
                self.reject_task(tid, f"rejected: {reason}" if reason else "rejected")
        self.approvals.announce()

    def _header(self) -> dict[str, Any]:
        return self.records.header(
            self.graph,
            self.state,
            self.options,
            created=self.carried.created,
            approve=approve_record(self.approve),
        )

    async def _recommit(self, found: dict[str, Any]) -> None:
        """Results the run being continued holds in memory but the store lacks are
        committed now instead of being computed again."""
        keys, forced = self.state.keys, self._forced
        missing = {
            key: value
            for tid, (key, value) in self.carried.results.items()
            if keys.get(tid) == key and key not in found and tid not in forced
        }
        await self.records.recommit(missing, reason="resumed")
        found.update(missing)

    def _leave_unselected(self) -> None:
        """Tasks outside ``only`` without a stored result are skipped in this run."""
        sched, status = self.sched, self.state.status
        assert sched is not None
        assert self._only is not None
        for tid in self._tasks:
            if tid in self._only or status[tid] in FINAL_STATUSES:
                continue
            for skipped in (tid, *sched.cancel(tid)):
                self._finish(skipped, "skipped", error="not selected for this run", record=False)

    # --- dispatch and workers ----------------------------------------------------------------

    def dispatch(self) -> None:
        sched = self.sched
        if sched is None:
            return
        if self.store_error is not None or self.cancelled:
            if not self._workers:
                self._resolve_finished()
            return
        spawn, work, workers = self._loop.create_task, self._work, self._workers
        for tid in sched.get_ready():
            workers[tid] = spawn(work(tid))
        if not sched.is_active():
            self._resolve_finished()

    def _resolve_finished(self) -> None:
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    async def _work(self, tid: str) -> None:
        sched, state = self.sched, self.state
        assert sched is not None
        task = self._tasks[tid]
        attempt = sched.attempts(tid)
        state.attempts[tid] = attempt
        state.first_start.setdefault(tid, state.now())
        state.set_status(tid, "started", attempt=attempt)
        key = state.keys[tid]
        ctx = TaskContext(state.run_id, task, attempt, goal=self.graph.goal, key=key)
        try:
            results = state.results
            inputs = {dep: results[dep] for dep in task.dependencies}
            timeout = self.options.task_timeout(task)
            value = await self._attempts.execute(key, task, inputs, ctx, timeout)
        except asyncio.CancelledError:
            if self._workers.get(tid) is asyncio.current_task():
                del self._workers[tid]
            if state.status.get(tid) in FINAL_STATUSES or self.cancelled:
                return  # cancelled on purpose: its state is already recorded
            raise
        except Exception as exc:  # any error of the task's own code is its outcome
            self._workers.pop(tid, None)
            self._task_failed(tid, exc, attempt)
            return
        if ctx.usage is not None:
            state.add_usage(tid, ctx.usage)
        meta = {"task_id": tid, "run_id": state.run_id, "kind": task.kind}
        if ctx.usage is not None:
            meta["tokens"] = ctx.usage.total_tokens
        try:
            await self.records.commit(key, value, meta)
        except StoreUnavailableError as exc:  # the store's failure, not the task's
            self._workers.pop(tid, None)
            state.results[tid] = value
            self.pending_writes[tid] = (key, value, meta)
            state.set_status(tid, "unsaved", attempt=attempt, error=str(exc))
            self._store_failed(exc)
            return
        except StoreError as exc:  # the value itself cannot be stored (no codec takes it)
            self._workers.pop(tid, None)
            self._task_failed(tid, exc, attempt)
            return
        self._workers.pop(tid, None)
        state.results[tid] = value
        newly_ready = sched.done(tid)
        self._finish(tid, "done", attempt=attempt)
        for ready in newly_ready:
            state.set_status(ready, "queued")
        if sched.has_held():
            self.approvals.announce()
        self.dispatch()

    # --- failures, retries, cancellation -------------------------------------------------------

    def _task_failed(self, tid: str, exc: BaseException, attempt: int) -> None:
        assert self.sched is not None
        message = one_line(exc)
        outcome = self.sched.failed(tid, retryable=not isinstance(exc, PERMANENT_ERRORS))
        if outcome.retry:
            retry_after = getattr(exc, "retry_after", None)
            delay = self.options.retry_delay(attempt, random.random(), retry_after)
            self.state.set_status(
                tid, "retrying", attempt=attempt, error=message, data={"delay": delay}
            )
            self._timers[tid] = self._loop.call_later(delay, self._requeue, tid)
        else:
            self._finish(tid, "failed", attempt=attempt, error=message)
            for skipped in outcome.skipped:
                self._finish(skipped, "skipped", error=f"dependency {tid!r} failed")
            if self.options.fail_fast:
                self.cancel_all(f"fail_fast: {tid!r} failed")
        self.dispatch()

    def _requeue(self, tid: str) -> None:
        self._timers.pop(tid, None)
        sched = self.sched
        if sched is None or sched.state(tid) != "waiting" or self.cancelled:
            return
        if self.store_error is not None:
            return
        sched.requeue(tid)
        if sched.has_held():
            self.approvals.announce()
        else:
            self.state.set_status(tid, "queued")
        self.dispatch()

    def cancel_task(self, tid: str) -> None:
        """Cancel one task; its descendants become skipped."""
        if tid not in self.state.status:
            raise RunError(f"no task {tid!r} in run {self.state.run_id!r}")
        if self.sched is None or self.state.status[tid] in FINAL_STATUSES:
            return
        skipped = self.sched.cancel(tid)
        self._stop(tid)
        self._finish(tid, "cancelled", error="cancelled by the user")
        for other in skipped:
            self._finish(other, "skipped", error=f"{tid!r} was cancelled")
        self.dispatch()

    def cancel_all(self, reason: str) -> None:
        """Cancel every unfinished task and end the run."""
        if self.sched is not None:
            for tid in self.sched.cancel_all():
                self._stop(tid)
                self._finish(tid, "cancelled", error=reason)
        self._resolve_finished()

    def _stop(self, tid: str) -> None:
        timer = self._timers.pop(tid, None)
        if timer is not None:
            timer.cancel()
        worker = self._workers.pop(tid, None)
        if worker is not None and not worker.done():
            self._attempts.abandon(worker)

    def _store_failed(self, exc: StoreError) -> None:
        """Stop starting tasks; running ones finish and keep their results in memory."""
        if self.store_error is None:
            self.store_error = exc
            self.state.error = str(exc)
            self.records.broken = True
        self.dispatch()

    # --- state and the end ----------------------------------------------------------------------

    def _finish(
        self,
        tid: str,
        kind: str,
        *,
        attempt: int = 0,
        error: str | None = None,
        record: bool = True,
    ) -> None:
        """Task ``tid`` ended with an event of ``kind`` (done, failed, skipped, rejected…)."""
        state = self.state
        status = STATUS_AFTER[kind]
        if error is not None:
            if status == "failed":
                state.errors[tid] = error
            elif status in ("skipped", "cancelled"):
                state.errors.setdefault(tid, error)
        usage = state.usage_by_task.get(tid)
        data = {"tokens": usage.total_tokens} if usage is not None else None
        state.set_status(tid, kind, attempt=attempt, error=error, data=data)
        if record:
            start = state.first_start.get(tid)
            if start is not None:
                state.timeline[tid] = (start, state.now())
            self.records.task_changed(tid, self.task_record(tid, status))

    def task_record(self, tid: str, status: str) -> dict[str, Any]:
        """What the run's record keeps about a task now."""
        state = self.state
        span = state.timeline.get(tid)
        usage = state.usage_by_task.get(tid)
        return {
            "status": status,
            "attempts": state.attempts.get(tid, 0),
            "start": span[0] if span else state.first_start.get(tid),
            "end": span[1] if span else None,
            "error": state.errors.get(tid),
            "key": state.keys.get(tid),
            "tokens": usage.total_tokens if usage is not None else 0,
        }

    def reject_task(self, tid: str, error: str) -> None:
        """Skip a task that has not started, and its descendants (a rejected approval)."""
        assert self.sched is not None
        for other in self.sched.cancel(tid):
            self._finish(other, "skipped", error=f"{tid!r} was rejected")
        self._finish(tid, "rejected", error=error)
        self.dispatch()

    # --- approvals (see _gates) ---------------------------------------------------------------

    def approve_task(self, tid: str) -> None:
        self.approvals.approve(tid)

    def reject_approval(self, tid: str, reason: str | None = None) -> None:
        self.approvals.reject(tid, reason)

    async def _wind_down(self) -> None:
        """Stop everything this run started, write the last records, free the lease."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.approvals.close()
        for worker in self._workers.values():
            self._attempts.abandon(worker)
        self._workers.clear()
        await self._attempts.settle(ABANDON_GRACE, self.state.run_id)
        await self.actions.aclose()
        await self.records.stop_renewing()
        state = self.state
        state.finished_at = time.time()
        if self.cancelled:
            state.state = "cancelled"
        elif state.error is not None or state.counts["done"] + state.counts["cached"] < len(
            state.status
        ):
            state.state = "failed"
        else:
            state.state = "finished"
        state.emit("run_finished", data={"state": state.state, "counts": vars(state.progress())})
        await self.records.finish(self._header())
        await self.records.close()
