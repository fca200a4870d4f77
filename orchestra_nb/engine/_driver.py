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

Around this core: approval gates hold tasks for a person (``_gates``), a final
failure may bring a revised plan (``_revisions``), a plan may still be growing
(``_growth``), and a task waiting in a provider batch is parked (``_batches``).

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
from collections.abc import Iterable, Mapping
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
from ._batches import Batches
from ._gates import (
    Admission,
    Approvals,
    Approve,
    admit,
    approve_record,
    check_approve,
)
from ._growth import Growth
from ._revisions import Replanner, Replanning
from ._selection import Carried, forced_ids, leave_unselected, scheduler_for, selection

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
        replanner: Replanner | None = None,
        growing: bool = False,
        admission: Admission | None = None,
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
        self._refresh_all = refresh is True  # tasks added later are computed afresh too
        self._only = None if only is None else selection(graph, only)
        self.sched: Scheduler | None = None
        self.approve = check_approve(graph, approve)
        self.approvals = Approvals(self, timeout=options.approval_timeout)
        self.replanning = Replanning(
            self,
            replanner=replanner,  # run.replan(id) uses it whatever on_failure says
            automatic=options.on_failure == "replan",
            max_replans=options.max_replans,
            past=list(self.carried.revisions),
        )
        self.growing = growing  # the plan is still being written: do not end when idle
        self.admission = admission
        self.growth = Growth(self)
        self.batches = Batches(self)
        self.prepared = asyncio.Event()

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
            kind = type(self.store_error)  # StoreFullError stays a StoreFullError
            if not issubclass(kind, StoreUnavailableError):
                kind = StoreUnavailableError
            raise kind(
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
        graph, state = self.graph, self.state
        await self.actions.prepare(graph)
        prepare_admission = getattr(self.admission, "prepare", None)
        if prepare_admission is not None:
            await prepare_admission(graph)
        state.keys = self.actions.cache_keys(graph)
        completed = await self.stored_results(state.keys)
        await self.records.save_header(self._header())
        self.sched = self.build_scheduler(graph, completed)
        state.emit("run_started", data={"tasks": len(state.status), "cached": len(completed)})
        carried = self.carried.tasks
        for tid in completed:
            previous = carried.get(tid, {}).get("status")
            self.finish(tid, "done" if previous == "done" else "cached", record=False)
        if self._only is not None:
            leave_unselected(self, self._only)
        self.announce_ready(graph.tasks)
        self.approvals.apply_recorded(self.carried.tasks)
        self.growth.prepared()
        self.prepared.set()

    async def stored_results(
        self, keys: Mapping[str, str], *, into_state: bool = True
    ) -> dict[str, Any]:
        """Results the store (or the run being continued) has for tasks among ``keys``
        (id -> value); they go into the run's state unless ``into_state`` is false."""
        wanted = {tid: k for tid, k in keys.items() if tid not in self._forced}
        found = await self.records.stored(wanted, carried=self.carried.results)
        if into_state:
            self.state.results.update(found)
        return found

    def refresh_added(self, ids: Iterable[str]) -> None:
        """Tasks added to a growing run started with ``refresh=True`` ignore the store too."""
        if self._refresh_all:
            self._forced.update(ids)

    def build_scheduler(self, graph: TaskGraph, completed: Iterable[str]) -> Scheduler:
        """A scheduler for ``graph`` with ``completed`` done, gates and limits applied."""
        gated = self.approvals.gated(graph, self.carried.tasks)
        return scheduler_for(graph, self.options, completed=completed, gated=gated)

    def announce_ready(self, tids: Iterable[str]) -> None:
        """Say which of ``tids`` are queued, and which now await approval."""
        sched, state = self.sched, self.state
        assert sched is not None
        for tid in tids:
            if sched.state(tid) == "ready" and state.status[tid] != "ready":
                state.set_status(tid, "queued")
        self.approvals.announce()

    def _header(self) -> dict[str, Any]:
        return self.records.header(
            self.graph,
            self.state,
            self.options,
            created=self.carried.created,
            approve=approve_record(self.approve),
            revisions=[r.to_record() for r in self.replanning.revisions],
            llm=self.actions.llm_source(),
        )

    def save_header_soon(self) -> None:
        """Write the header again in the background (the graph or its revisions changed)."""
        self.records.save_header_soon(self._header)

    def running_count(self) -> int:
        return len(self._workers)

    def has_worker(self, tid: str) -> bool:
        """Whether task ``tid`` has a worker now (a parked one included)."""
        return tid in self._workers

    def running(self) -> list[str]:
        """The tasks executing now (O(tasks in flight))."""
        return list(self._workers)

    def use_graph(self, graph: TaskGraph, *, forget_forced: set[str]) -> None:
        """Continue with ``graph`` (a revised plan); refreshed tasks were recomputed."""
        self.graph, self._tasks = graph, graph.tasks
        self._forced -= forget_forced

    # --- dispatch and workers ----------------------------------------------------------------

    def dispatch(self) -> None:
        """Start every task the pool has room for; notice when the run is over."""
        sched = self.sched
        if sched is None:
            return
        if self.store_error is not None or self.cancelled:
            if not self._workers:
                self._resolve_finished()
            return
        if self.replanning.busy:  # a revision is coming: start nothing until it is applied
            self.replanning.maybe_start()
            return
        spawn, work, workers = self._loop.create_task, self._work, self._workers
        ready = sched.get_ready()
        while ready:
            refused = False
            for tid in ready:
                if self.admission is not None and not admit(self, tid):
                    refused = True
                else:
                    workers[tid] = spawn(work(tid))
            ready = sched.get_ready() if refused else []  # a refused task freed its slot
        if not sched.is_active() and not self.growing:
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
        ctx = TaskContext(
            state.run_id,
            task,
            attempt,
            goal=self.graph.goal,
            key=key,
            batch=self.batches.carried(tid, attempt),
            hooks=self.batches,
        )
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
        self.finish(tid, "done", attempt=attempt)
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
            self.finish(tid, "failed", attempt=attempt, error=message)
            for skipped in outcome.skipped:
                self.finish(skipped, "skipped", error=f"dependency {tid!r} failed")
            if not self.replanning.wants(tid, message) and self.options.fail_fast:
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
        self.finish(tid, "cancelled", error="cancelled by the user")
        for other in skipped:
            self.finish(other, "skipped", error=f"{tid!r} was cancelled")
        self.dispatch()

    def cancel_all(self, reason: str) -> None:
        """Cancel every unfinished task and end the run."""
        if self.sched is not None:
            for tid in self.sched.cancel_all():
                self._stop(tid)
                # a task awaiting approval keeps waiting in the record: a decision made
                # while the run is stopped (orchestra-nb approve) applies on resume
                waiting = self.state.status.get(tid) == "awaiting_approval"
                self.finish(tid, "cancelled", error=reason, record=not waiting)
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

    def finish(
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
            self.records.task_changed(tid, self.state.task_record(tid, status))

    async def _wind_down(self) -> None:
        """Stop everything this run started, write the last records, free the lease."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self.approvals.close()
        self.replanning.close()
        for worker in self._workers.values():
            self._attempts.abandon(worker)
        self._workers.clear()
        await self._attempts.settle(ABANDON_GRACE, self.state.run_id)
        await self.actions.aclose()
        await self.records.stop_renewing()
        self.state.conclude(cancelled=self.cancelled)
        await self.records.finish(self._header())
        await self.records.close()
