"""The async driver: runs a TaskGraph on the running event loop with a bounded pool.

How the next task is chosen lives in the pure ``Scheduler``; this module does the
I/O around it. A run goes:

1. compute every task's cache key (content hashes, chained through dependencies);
2. fetch what the store already has in one batch read: those tasks are ``cached``;
3. write the run's header (graph snapshot, options, keys) and take its lease;
4. hand ready tasks to workers as slots free up; a worker executes the task's
   action (LLM, Python function, report, or the user's ``runner``), commits the
   result to the store, and only then reports it done, which may make other tasks
   ready — completions drive dispatch directly, there is no polling loop;
5. failures retry with exponential backoff and jitter (the slot is released while
   waiting); a final failure skips the task's descendants, or with ``fail_fast``
   cancels everything;
6. per-task records are written in batches as the run goes, so after a crash
   ``resume`` finds every committed result and runs only the rest.

Nothing blocks the loop: sync code runs in threads, store I/O is async. A task
that times out or is cancelled gives its slot back at once even if its code
ignores the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from ._actions import DEFAULT_INPUT_BUDGET, Actions, TaskContext, ThreadRunner, graph_cache_keys
from ._dask import Committed, StoredResult
from ._errors import (
    ConfigError,
    LeaseError,
    PlanError,
    ReplayMissError,
    RunError,
    StoreError,
    StoreUnavailableError,
    TaskFailedError,
)
from ._events import STATUS_AFTER, Event, EventLog
from ._kinds import FINAL_STATUSES
from ._plan import TaskGraph
from ._scheduler import Scheduler

if TYPE_CHECKING:
    from .llm import LLM, Usage
    from .store import ResultStore

log = logging.getLogger("orchestra_nb")

MODES = ("pipeline", "parallel", "dag")
#: Errors that will not go away by trying again.
_PERMANENT = (ConfigError, PlanError, ReplayMissError, RunError, StoreError, TypeError)
_ABANDON_GRACE = 1.0  # seconds a cancelled task may take to honour cancellation
_FLUSH_EVERY = 0.25  # seconds between batched writes of per-task records


class TaskTimeoutError(TimeoutError):
    """A task ran longer than its timeout."""


@dataclass(frozen=True)
class RunOptions:
    """How a run executes. Everything here is recorded so ``resume`` can reuse it."""

    mode: str = "dag"
    max_workers: int = 5
    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float | None = None
    run_timeout: float | None = None
    fail_fast: bool = False
    pools: Mapping[str, int] = field(default_factory=dict)
    input_budget: int = DEFAULT_INPUT_BUDGET
    lease_ttl: float = 30.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RunError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        if not isinstance(self.max_workers, int) or self.max_workers < 1:
            raise RunError(f"max_workers must be a positive integer, not {self.max_workers!r}")
        if self.retries < 0:
            raise RunError(f"retries must be ≥ 0, not {self.retries!r}")
        for name in ("timeout", "run_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise RunError(f"{name} must be positive seconds, not {value!r}")

    @property
    def workers(self) -> int:
        return 1 if self.mode == "pipeline" else self.max_workers


@dataclass(frozen=True)
class Progress:
    """Counts for a progress line."""

    total: int
    done: int
    cached: int
    failed: int
    skipped: int
    cancelled: int
    running: int
    waiting: int
    tokens: int
    elapsed: float

    @property
    def finished(self) -> int:
        return self.done + self.cached + self.failed + self.skipped + self.cancelled

    def __str__(self) -> str:
        parts = [f"{self.done + self.cached}/{self.total} done"]
        for name in ("running", "waiting", "failed", "skipped", "cancelled", "cached"):
            value = getattr(self, name)
            if value:
                parts.append(f"{value} {name}")
        if self.tokens:
            parts.append(f"{self.tokens:,} tokens")
        parts.append(f"{self.elapsed:.1f}s")
        return " · ".join(parts)


class Run:
    """One execution of a TaskGraph: live status while it runs, results after.

    ``await run`` waits for the end and returns the run; ``run.cancel()`` cancels
    everything, ``run.cancel(task_id)`` one task (its descendants are skipped).
    ``status``, ``results``, ``errors``, ``attempts`` and ``timeline`` are live
    dicts keyed by task id; ``subscribe(callback)`` delivers every ``Event``.
    """

    def __init__(
        self,
        graph: TaskGraph,
        *,
        run_id: str,
        options: RunOptions,
        store: ResultStore,
        owns_store: bool,
        actions: Actions,
        store_spec: ResultStore | str | None = None,
        refresh: bool | Iterable[str] = False,
        resumed: _Resumed | None = None,
    ) -> None:
        self.id = run_id
        self.graph = graph
        self.options = options
        self.store = store
        self.store_spec = store_spec
        self._owns_store = owns_store
        self.actions = actions
        self._refresh = refresh
        self._resumed = resumed or _Resumed()
        # task id -> (key, value, meta) computed but not committed (the store was down)
        self.pending_writes: dict[str, tuple[str, Any, dict[str, Any]]] = {}

        self.status: dict[str, str] = dict.fromkeys(graph.tasks, "pending")
        self.results: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.attempts: dict[str, int] = dict.fromkeys(graph.tasks, 0)
        self.timeline: dict[str, tuple[float, float]] = {}
        self.spans: list[tuple[str, int, float, float, str]] = []
        self.usage_by_task: dict[str, Usage] = {}
        self.keys: dict[str, str] = {}
        self.events = EventLog()
        self.state = "pending"
        self.error: str | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None

        self._subscribers: list[Callable[[Event], None]] = []
        self._tasks = graph.tasks
        self._t0 = time.monotonic()
        self._sched: Scheduler | None = None
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._starts: dict[str, float] = {}
        self._first_start: dict[str, float] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._inflight: dict[str, list[asyncio.Future[Any]]] = {}
        self._abandoned: set[asyncio.Task[Any]] = set()
        self._dirty: dict[str, dict[str, Any]] = {}
        self._flush_task: asyncio.Task[None] | None = None
        self._flush_handle: asyncio.TimerHandle | None = None
        self._finished: asyncio.Future[None] | None = None
        self._main: asyncio.Task[Run] | None = None
        self._awaited = False  # someone awaits the run, so its error reaches them
        self._cancel_requested = False
        self._store_error: StoreUnavailableError | None = None
        self._lease_name = f"run:{run_id}"
        self._lease_owner = self._resumed.lease_owner or (
            f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )

    # --- public surface ------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Run]:
        if self._main is None:
            raise RunError("this run was never started; use orchestra_nb.start() or run()")
        self._awaited = True
        return self._main.__await__()

    @property
    def done(self) -> bool:
        return self._main is not None and self._main.done()

    @property
    def ok(self) -> bool:
        """True when every task finished with a result (done or cached)."""
        return self.state == "finished"

    @property
    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.time()
        return 0.0 if self.started_at is None else end - self.started_at

    @property
    def usage(self) -> Usage:
        from .llm import Usage

        total = Usage()
        for usage in self.usage_by_task.values():
            total = total + usage
        return total

    def result(self, task_id: str) -> Any:
        """The result of one task; TaskFailedError if it failed, KeyError if it has none."""
        if task_id in self.results:
            return self.results[task_id]
        if task_id in self.errors:
            raise TaskFailedError(task_id, self.errors[task_id])
        if task_id not in self.status:
            raise KeyError(f"no task {task_id!r} in this run")
        raise KeyError(f"task {task_id!r} has no result ({self.status[task_id]})")

    def progress(self) -> Progress:
        counts: dict[str, int] = {}
        for status in self.status.values():
            counts[status] = counts.get(status, 0) + 1
        return Progress(
            total=len(self.status),
            done=counts.get("done", 0),
            cached=counts.get("cached", 0),
            failed=counts.get("failed", 0),
            skipped=counts.get("skipped", 0),
            cancelled=counts.get("cancelled", 0),
            running=counts.get("running", 0),
            waiting=counts.get("waiting", 0),
            tokens=self.usage.total_tokens,
            elapsed=self.elapsed,
        )

    def gantt(self) -> list[tuple[str, float, float, str, bool]]:
        """(task id, start, end, status, still running) per started task, by start time;
        a task still running ends "now"."""
        now = time.monotonic() - self._t0
        rows = []
        for tid, start in self._first_start.items():
            span = self.timeline.get(tid)
            rows.append((tid, start, span[1] if span else now, self.status[tid], span is None))
        rows.sort(key=lambda r: (r[1], r[0]))
        return rows

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every later event; returns an unsubscribe function."""
        self._subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Callable[[Event], None]) -> None:
        self._subscribers = [cb for cb in self._subscribers if cb != callback]

    def cancel(self, task_id: str | None = None) -> None:
        """Cancel the whole run, or one task (its descendants become skipped)."""
        if task_id is None:
            if self._main is not None and not self._main.done():
                self._cancel_requested = True
                self._main.cancel()
            return
        if task_id not in self.status:
            raise RunError(f"no task {task_id!r} in run {self.id!r}")
        if self._sched is None or self.status[task_id] in FINAL_STATUSES:
            return
        skipped = self._sched.cancel(task_id)
        self._stop_task(task_id)
        self._finish_task(task_id, "cancelled", error="cancelled by the user")
        for tid in skipped:
            self._finish_task(tid, "skipped", error=f"{task_id!r} was cancelled")
        self._dispatch()

    def __repr__(self) -> str:
        return f"Run({self.id!r}, {self.state}, {self.progress()})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from ._render import graph_mimebundle

        bundle = graph_mimebundle(self.graph, self.status)
        bundle["text/plain"] = f"Run {self.id}: {self.state}\n" + bundle["text/plain"]
        return bundle

    # --- the run --------------------------------------------------------------------

    def _start(self) -> Run:
        self._loop = loop = asyncio.get_running_loop()
        self._finished = loop.create_future()
        self._main = loop.create_task(self._run(), name=f"orchestra-run-{self.id}")
        self._main.add_done_callback(self._log_unawaited)
        return self

    def _log_unawaited(self, main: asyncio.Task[Any]) -> None:
        """Nobody may await a run started from a notebook: never let its error vanish."""
        if not self._awaited and not main.cancelled() and main.exception() is not None:
            log.warning("run %s stopped: %s", self.id, main.exception())

    async def _run(self) -> Run:
        self.state = "running"
        self.started_at = time.time()
        self._t0 = time.monotonic()
        lease = False
        try:
            lease = await self._take_lease()
            renew = asyncio.ensure_future(self._renew_lease())
            try:
                await self._prepare()
                self._dispatch()
                assert self._finished is not None
                if self.options.run_timeout is None:
                    await self._finished
                else:
                    try:
                        await asyncio.wait_for(
                            asyncio.shield(self._finished), self.options.run_timeout
                        )
                    except TimeoutError:
                        self.error = f"run timed out after {self.options.run_timeout:g} s"
                        self._cancel_everything("run timed out")
            finally:
                renew.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renew
        except asyncio.CancelledError:
            # run.cancel(), or whoever awaits the run was cancelled (an interrupted cell)
            external = not self._cancel_requested
            self._cancel_requested = True
            self._cancel_everything("run cancelled")
            if external:
                await self._wind_down(lease)
                raise
        except BaseException:
            self._cancel_everything("run aborted")
            await self._wind_down(lease)
            raise
        await self._wind_down(lease)
        if self._store_error is not None:
            error = StoreUnavailableError(
                f"{self._store_error}; {len(self.pending_writes)} computed result(s) kept in "
                f"memory: run `await orchestra_nb.resume(run)` when the store is back"
            )
            error.run = self  # type: ignore[attr-defined]
            raise error
        return self

    async def _prepare(self) -> None:
        graph = self.graph
        await self.actions.prepare(graph)
        self.keys = self.actions.cache_keys(graph)
        forced = self._forced_ids()
        wanted = {k for tid, k in self.keys.items() if tid not in forced}
        found = await self.store.get_many(wanted) if wanted else {}
        await self._recommit(found, forced)
        completed = [tid for tid, k in self.keys.items() if k in found and tid not in forced]
        for tid in completed:
            self.results[tid] = found[self.keys[tid]]
        await self.store.save_run(self.id, self._header())

        options = self.options
        tasks = graph.tasks
        deps = {tid: t.dependencies for tid, t in tasks.items()}
        resources = {}
        for tid, t in tasks.items():
            wants = dict(t.resources)
            if not wants and t.kind in options.pools:
                wants = {t.kind: 1}
            if wants:
                resources[tid] = wants
        self._sched = Scheduler(
            deps,
            priority={tid: t.priority for tid, t in tasks.items() if t.priority is not None},
            durations=graph.durations(),
            resources=resources,
            pools=dict(options.pools),
            max_workers=options.workers,
            retries=self._retries(),
            completed=completed,
        )
        self._emit("run_started", data={"tasks": len(self.status), "cached": len(completed)})
        for tid in completed:
            previous = self._resumed.tasks.get(tid, {}).get("status")
            self._finish_task(tid, "done" if previous == "done" else "cached", record=False)
        for tid in tasks:
            if self._sched.state(tid) == "ready":
                self._set_status(tid, "queued")

    def _retries(self) -> int | dict[str, int]:
        default = self.options.retries
        tasks = self._tasks
        if all(t.retries is None for t in tasks.values()):
            return default
        return {tid: default if t.retries is None else t.retries for tid, t in tasks.items()}

    def _forced_ids(self) -> set[str]:
        refresh = self._refresh
        if refresh is True:
            return set(self.graph.tasks)
        if not refresh:
            return set()
        forced: set[str] = set()
        for tid in refresh:  # type: ignore[union-attr]
            if tid not in self.graph:
                raise RunError(f"cannot refresh unknown task {tid!r}")
            forced.add(tid)
            forced |= self.graph.descendants(tid)
        return forced

    def _header(self) -> dict[str, Any]:
        return {
            "run_id": self.id,
            "created": self._resumed.created or self.started_at,
            "state": self.state,
            "goal": self.graph.goal,
            # JSON text (from_plan reads it back), built once per graph: a string is one
            # object the garbage collector ignores, the plan as dicts two per task it tracks
            "graph": self.graph.to_json(indent=None),
            "keys": self.keys,
            "options": asdict(self.options),
            "tasks": len(self.status),
        }

    # --- dispatch and workers ------------------------------------------------------------

    def _dispatch(self) -> None:
        sched = self._sched
        if sched is None:
            return
        if self._stopping():
            if not self._workers:
                self._resolve_finished()
            return
        spawn = self._loop.create_task
        for tid in sched.get_ready():
            self._workers[tid] = spawn(self._work(tid))
        if not sched.is_active():
            self._resolve_finished()

    def _resolve_finished(self) -> None:
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def _stopping(self) -> bool:
        return self._store_error is not None or self._cancel_requested

    async def _work(self, tid: str) -> None:
        assert self._sched is not None
        task = self._tasks[tid]
        attempt = self._sched.attempts(tid)
        self.attempts[tid] = attempt
        now = time.monotonic() - self._t0
        self._starts[tid] = now
        self._first_start.setdefault(tid, now)
        self._set_status(tid, "started", attempt=attempt)
        key = self.keys[tid]
        ctx = TaskContext(self.id, task, attempt, goal=self.graph.goal, key=key)
        try:
            value = await self._execute_once(key, task, ctx)
            if isinstance(value, Committed):  # a cluster worker already stored it
                value = value.result
            else:
                meta = {"task_id": tid, "run_id": self.id, "kind": task.kind}
                if ctx.usage is not None:
                    meta["tokens"] = ctx.usage.total_tokens
                try:
                    await self.store.put(key, value, meta=meta)
                except StoreUnavailableError as exc:
                    self.pending_writes[tid] = (key, value, meta)
                    self._store_failed(exc)
        except asyncio.CancelledError:
            if self._workers.get(tid) is asyncio.current_task():
                self._workers.pop(tid, None)
            if self.status.get(tid) in FINAL_STATUSES or self._cancel_requested:
                return  # cancelled on purpose: state already recorded
            raise
        except Exception as exc:  # any error of the task's own code is its outcome
            self._workers.pop(tid, None)
            self._task_failed(tid, exc, attempt)
            return
        self._workers.pop(tid, None)
        if ctx.usage is not None:
            self.usage_by_task[tid] = ctx.usage
        if tid in self.pending_writes:
            # kept, but not reported done: it is not committed to the store
            self.results[tid] = value
            self.status[tid] = "unsaved"
            self._record_span(tid, attempt, "unsaved")
            self._dispatch()
            return
        self.results[tid] = value
        self._record_span(tid, attempt, "done")
        newly_ready = self._sched.done(tid)
        self._finish_task(tid, "done", attempt=attempt)
        for ready in newly_ready:
            self._set_status(ready, "queued")
        self._dispatch()

    async def _execute_once(self, key: str, task: Any, ctx: TaskContext) -> Any:
        """Execute, or share the result of an identical task already in flight."""
        waiters = self._inflight.get(key)
        if waiters is not None:  # an identical task is running: wait for its result
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            waiters.append(future)
            return await future
        self._inflight[key] = waiters = []
        try:
            inputs = {dep: self.results[dep] for dep in task.dependencies}
            if self.actions.executor is not None and not self.actions.remote(task):
                inputs = await self._fetch_inputs(inputs)
            if task.timeout is None and self.options.timeout is None:
                value = await self.actions.execute(task, inputs, ctx)
            else:
                value = await self._execute_with_timeout(task, inputs, ctx)
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                exc = RunError(f"the identical task {task.id!r} was cancelled")
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(exc)
            raise
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(value)
            return value
        finally:
            del self._inflight[key]

    async def _fetch_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Values of inputs that a cluster worker left in the store (a local task needs them)."""
        stored = {dep: ref for dep, ref in inputs.items() if isinstance(ref, StoredResult)}
        if not stored:
            return inputs
        found = await self.store.get_many(ref.key for ref in stored.values())
        return {dep: found[ref.key] if dep in stored else ref for dep, ref in inputs.items()}

    async def fetch(self, task_id: str) -> Any:
        """A task's result, loaded from the store when a cluster worker left it there."""
        value = self.result(task_id)
        if isinstance(value, StoredResult):
            return await self.store.get(value.key)
        return value

    async def _execute_with_timeout(
        self, task: Any, inputs: dict[str, Any], ctx: TaskContext
    ) -> Any:
        timeout = task.timeout if task.timeout is not None else self.options.timeout
        coro = self.actions.execute(task, inputs, ctx)
        if timeout is None:
            return await coro
        inner = asyncio.ensure_future(coro)
        try:
            done, _pending = await asyncio.wait({inner}, timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(inner)
            raise
        if inner in done:
            return inner.result()
        self._abandon(inner)
        raise TaskTimeoutError(f"timed out after {timeout:g} s")

    def _abandon(self, inner: asyncio.Future[Any]) -> None:
        """Cancel a task's code and stop waiting for it; its slot is already free."""
        inner.cancel()
        if not inner.done():
            self._abandoned.add(inner)  # type: ignore[arg-type]
            inner.add_done_callback(self._forget_abandoned)

    def _forget_abandoned(self, inner: asyncio.Future[Any]) -> None:
        self._abandoned.discard(inner)  # type: ignore[arg-type]
        if not inner.cancelled():
            inner.exception()  # retrieve it so asyncio does not warn

    def _task_failed(self, tid: str, exc: BaseException, attempt: int) -> None:
        assert self._sched is not None
        message = _one_line(exc)
        retryable = not isinstance(exc, _PERMANENT)
        outcome = self._sched.failed(tid, retryable=retryable)
        self._record_span(tid, attempt, "failed")
        if outcome.retry:
            opts = self.options
            delay = min(opts.max_backoff, opts.backoff * 2 ** (attempt - 1))
            delay *= random.uniform(0.5, 1.0)  # equal jitter: spread retries, keep a floor
            self._set_status(tid, "retrying", attempt=attempt, error=message, delay=delay)
            loop = asyncio.get_running_loop()
            self._timers[tid] = loop.call_later(delay, self._requeue, tid)
        else:
            self._finish_task(tid, "failed", attempt=attempt, error=message)
            for skipped in outcome.skipped:
                self._finish_task(skipped, "skipped", error=f"dependency {tid!r} failed")
            if self.options.fail_fast:
                self._cancel_everything(f"fail_fast: {tid!r} failed")
        self._dispatch()

    def _requeue(self, tid: str) -> None:
        self._timers.pop(tid, None)
        if self._sched is None or self._sched.state(tid) != "waiting" or self._stopping():
            return
        self._sched.requeue(tid)
        self._set_status(tid, "queued")
        self._dispatch()

    def _stop_task(self, tid: str) -> None:
        timer = self._timers.pop(tid, None)
        if timer is not None:
            timer.cancel()
        worker = self._workers.pop(tid, None)
        if worker is not None and not worker.done():
            worker.cancel()
            self._abandoned.add(worker)
            worker.add_done_callback(self._forget_abandoned)

    def _cancel_everything(self, reason: str) -> None:
        if self._sched is None:
            return
        for tid in self._sched.cancel_all():
            self._stop_task(tid)
            self._finish_task(tid, "cancelled", error=reason)
        self._resolve_finished()

    def _store_failed(self, exc: StoreUnavailableError) -> None:
        """Stop starting tasks; running ones finish and keep their results in memory."""
        if self._store_error is None:
            self._store_error = exc
            self.error = str(exc)
        self._dispatch()

    # --- state, events, records ------------------------------------------------------------

    def _set_status(
        self, tid: str, kind: str, *, attempt: int = 0, error: str | None = None, **data: Any
    ) -> None:
        self.status[tid] = STATUS_AFTER[kind]
        self._emit(kind, tid, attempt=attempt, error=error, data=data)

    def _finish_task(
        self,
        tid: str,
        status: str,
        *,
        attempt: int = 0,
        error: str | None = None,
        record: bool = True,
    ) -> None:
        if error is not None and status == "failed":
            self.errors[tid] = error
        elif status in ("skipped", "cancelled") and error:
            self.errors.setdefault(tid, error)
        data: dict[str, Any] = {}
        usage = self.usage_by_task.get(tid)
        if usage is not None:
            data["tokens"] = usage.total_tokens
        self._set_status(tid, status, attempt=attempt, error=error, **data)
        if record:
            start = self._first_start.get(tid)
            end = time.monotonic() - self._t0
            if start is not None:
                self.timeline[tid] = (start, end)
            self._dirty[tid] = {
                "status": status,
                "attempts": self.attempts.get(tid, 0),
                "start": start,
                "end": end if start is not None else None,
                "error": self.errors.get(tid),
                "key": self.keys.get(tid),
                "tokens": data.get("tokens", 0),
            }
            self._schedule_flush()

    def _record_span(self, tid: str, attempt: int, outcome: str) -> None:
        start = self._starts.get(tid, 0.0)
        self.spans.append((tid, attempt, start, time.monotonic() - self._t0, outcome))

    def _emit(
        self,
        kind: str,
        task_id: str | None = None,
        *,
        attempt: int = 0,
        error: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        at = time.monotonic() - self._t0
        self.events.add(kind, self.id, at, task_id, attempt, error, data)
        if not self._subscribers:
            return
        event = Event(kind, self.id, at, task_id, attempt, error, data or {})  # type: ignore[arg-type]
        for callback in self._subscribers:
            try:
                callback(event)
            except Exception:  # an observer must never break a run
                log.exception("event observer %r failed", callback)

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and (self._flush_task is None or self._flush_task.done()):
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(_FLUSH_EVERY, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flush_task = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        if not self._dirty or self._store_error is not None:
            return
        batch, self._dirty = self._dirty, {}
        try:
            await self.store.save_run_tasks(self.id, batch)
        except StoreUnavailableError as exc:
            self._dirty = {**batch, **self._dirty}
            self._store_failed(exc)
        except StoreError:
            log.exception("could not write run records of %s", self.id)
        if self._dirty:
            self._schedule_flush()

    async def _recommit(self, found: dict[str, Any], forced: set[str]) -> None:
        """Results the run being resumed holds in memory but the store lacks — computed
        while the store was down, or lost by a store that restarted empty — are
        committed now instead of being computed again."""
        missing = {
            key: value
            for tid, (key, value) in self._resumed.results.items()
            if self.keys.get(tid) == key and key not in found and tid not in forced
        }
        if missing:
            meta = {key: {"run_id": self.id, "recommitted": True} for key in missing}
            await self.store.put_many(missing, meta=meta)
            found.update(missing)

    async def _take_lease(self) -> bool:
        store, name, ttl = self.store, self._lease_name, self.options.lease_ttl
        if await store.acquire_lease(name, self._lease_owner, ttl):
            return True
        holder = await store.lease_owner(name)
        if holder and _owner_is_dead(holder):
            await store.release_lease(name, holder)
            if await store.acquire_lease(name, self._lease_owner, ttl):
                return True
        raise LeaseError(
            f"run {self.id!r} is being executed by another process ({holder or 'unknown'}); "
            f"wait for it to finish or for its lease to expire ({ttl:g} s)"
        )

    async def _renew_lease(self) -> None:
        ttl = self.options.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self.store.renew_lease(self._lease_name, self._lease_owner, ttl):
                    log.warning("lost the lease on run %s", self.id)
            except StoreError as exc:
                log.warning("could not renew the lease on run %s: %s", self.id, exc)

    async def _wind_down(self, lease: bool) -> None:
        """Stop everything this run started, write the last records, free the lease."""
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        workers = [w for w in self._workers.values() if not w.done()]
        for worker in workers:
            worker.cancel()
        stragglers = set(workers) | self._abandoned
        if stragglers:
            _done, still = await asyncio.wait(stragglers, timeout=_ABANDON_GRACE)
            for task in still:
                log.warning("a task of run %s ignored cancellation and is left running", self.id)
                task.add_done_callback(self._forget_abandoned)
        self._workers.clear()
        self.actions.threads.close()
        self.finished_at = time.time()
        if self._cancel_requested:
            self.state = "cancelled"
        elif self.error is not None or any(
            s not in ("done", "cached") for s in self.status.values()
        ):
            self.state = "failed"
        else:
            self.state = "finished"
        self._emit("run_finished", data={"state": self.state, "counts": asdict(self.progress())})
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flush_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._flush_task
        if self._store_error is None:
            try:
                await self._flush()
                header = self._header()
                header.update(state=self.state, finished=self.finished_at, error=self.error)
                await self.store.save_run(self.id, header)
                if lease:
                    await self.store.release_lease(self._lease_name, self._lease_owner)
            except StoreUnavailableError as exc:
                self._store_failed(exc)
        if self._owns_store:
            with contextlib.suppress(Exception):
                await self.store.close()


@dataclass(frozen=True)
class _Resumed:
    """What a resumed run carries over from the run it continues."""

    tasks: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    results: Mapping[str, tuple[str, Any]] = field(default_factory=dict)  # id -> (key, value)
    lease_owner: str | None = None
    created: float | None = None


def _owner_is_dead(owner: str) -> bool:
    """A lease owner on this host whose process is gone (e.g. a killed kernel)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__name__
    if isinstance(exc, TaskTimeoutError | StoreError | ConfigError | RunError | PlanError):
        return text
    return f"{name}: {text}" if not text.startswith(name) else text


# --- entry points ------------------------------------------------------------------------------


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    get = getattr(shell, "get_ipython", None)
    ip = get() if get else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def _progress_bar(run: Run) -> None:
    """A tqdm bar on stderr for scripts and terminals (the widget covers notebooks)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(run.status), desc=f"run {run.id}", unit="task", leave=True)

    def on_event(event: Event) -> None:
        if event.kind in ("done", "cached", "failed", "skipped", "cancelled"):
            bar.update(1)
            p = run.progress()
            bar.set_postfix_str(f"failed={p.failed} tokens={p.tokens}", refresh=False)
        elif event.kind == "run_finished":
            bar.close()

    run.subscribe(on_event)


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def start(
    graph: TaskGraph | Any,
    runner: Callable[..., Any] | None = None,
    *,
    max_workers: int = 5,
    mode: str = "dag",
    store: ResultStore | str | None = None,
    llm: LLM | str | None = None,
    run_id: str | None = None,
    retries: int = 0,
    backoff: float = 1.0,
    max_backoff: float = 30.0,
    timeout: float | None = None,
    run_timeout: float | None = None,
    fail_fast: bool = False,
    refresh: bool | Iterable[str] = False,
    pools: Mapping[str, int] | None = None,
    functions: Any = None,
    executor: Any = None,
    progress: bool | None = None,
    on_event: Callable[[Event], None] | None = None,
    input_budget: int = DEFAULT_INPUT_BUDGET,
    signing_key: bytes | str | None = None,
    lease_ttl: float = 30.0,
    _resumed: _Resumed | None = None,
) -> Run:
    """Start a run on the running event loop and return it at once (``await run`` waits)."""
    from .store import open_store

    asyncio.get_running_loop()  # RuntimeError here, not later, when there is no loop
    graph = graph if isinstance(graph, TaskGraph) else TaskGraph.from_plan(graph)
    options = RunOptions(
        mode=mode,
        max_workers=max_workers,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        timeout=timeout,
        run_timeout=run_timeout,
        fail_fast=fail_fast,
        pools=dict(pools or {}),
        input_budget=input_budget,
        lease_ttl=lease_ttl,
    )
    if mode == "parallel":
        edges = graph.edges
        if edges:
            dep, child = edges[0]
            raise PlanError(
                f"mode 'parallel' runs independent tasks only, but task {child!r} depends on "
                f"{dep!r}; use mode='dag'",
                ids=[child, dep],
            )
    owns_store = not (store is not None and not isinstance(store, str))
    opened = open_store(store, signing_key=signing_key) if owns_store else store
    actions = Actions(
        runner=runner,
        llm=llm,
        functions=functions,
        goal=graph.goal,
        input_budget=input_budget,
        threads=ThreadRunner(options.workers),
        executor=executor,
    )
    actions.check(graph)  # unknown kinds, missing functions, no LLM configured: fail now
    if executor is not None:  # cluster workers commit results to the run's store themselves
        actions.store_url = opened.shared_url()
        actions.signing_key = opened.codecs._key if hasattr(opened, "codecs") else None
    run = Run(
        graph.copy(),
        run_id=run_id or new_run_id(),
        options=options,
        store=opened,
        owns_store=owns_store,
        store_spec=store,
        actions=actions,
        refresh=refresh,
        resumed=_resumed,
    )
    if on_event is not None:
        run.subscribe(on_event)
    if progress or (progress is None and sys.stderr.isatty() and not _in_notebook()):
        _progress_bar(run)
    return run._start()


async def run(
    graph: TaskGraph | Any, runner: Callable[..., Any] | None = None, **options: Any
) -> Run:
    """Run a graph to the end and return the finished ``Run`` (see ``start`` for options).

    Task failures do not raise: look at ``run.status`` / ``run.errors`` or call
    ``run.result(id)``. Problems that stop the run itself raise: an invalid
    option, a missing API key, another process holding the run's lease, an
    unreachable store.
    """
    return await start(graph, runner, **options)


async def resume(
    run_or_id: Run | str,
    runner: Callable[..., Any] | None = None,
    *,
    store: ResultStore | str | None = None,
    **overrides: Any,
) -> Run:
    """Finish an interrupted run: tasks with committed results are not run again.

    Takes a run id (after a kernel restart: the graph and options come from the
    store's run record) or a ``Run`` object (for instance one stopped by an
    unreachable store; results it holds that the store lacks are written first).
    """
    return await (await start_resume(run_or_id, runner, store=store, **overrides))


async def start_resume(
    run_or_id: Run | str,
    runner: Callable[..., Any] | None = None,
    *,
    store: ResultStore | str | None = None,
    **overrides: Any,
) -> Run:
    """Like ``resume`` but returns the continued run as soon as it has started."""
    from .store import open_store

    if isinstance(run_or_id, Run):
        previous = run_or_id
        if not previous.done:
            raise RunError(f"run {previous.id!r} is still running")
        options = {**asdict(previous.options), **overrides}
        options.setdefault("llm", previous.actions.llm_spec)
        options.setdefault("functions", previous.actions.functions)
        carried = _Resumed(
            tasks={tid: {"status": s} for tid, s in previous.status.items()},
            results={
                tid: (previous.keys[tid], value)
                for tid, value in previous.results.items()
                if tid in previous.keys
            },
            lease_owner=previous._lease_owner,
            created=previous.started_at,
        )
        return start(
            previous.graph,
            runner if runner is not None else previous.actions.runner,
            store=store if store is not None else previous.store_spec,
            run_id=previous.id,
            _resumed=carried,
            **options,
        )
    run_id = run_or_id
    opened = open_store(store)
    owns = opened is not store
    try:
        record = await opened.load_run(run_id)
    finally:
        if owns:
            await opened.close()
    if record is None:
        raise RunError(f"no run {run_id!r} in the store {opened.url}")
    header = record.header
    graph = TaskGraph.from_plan(header["graph"])
    options = {**_known_options(header.get("options") or {}), **overrides}
    carried = _Resumed(tasks=record.tasks, created=header.get("created"))
    return start(graph, runner, store=store, run_id=run_id, _resumed=carried, **options)


async def history(
    store: ResultStore | str | None = None, *, limit: int = 50
) -> list[dict[str, Any]]:
    """Earlier runs in a store, newest first (id, state, goal, task count, times)."""
    from .store import open_store

    opened = open_store(store)
    try:
        return await opened.list_runs(limit=limit)
    finally:
        if opened is not store:
            await opened.close()


async def rollback(run_id: str, *, store: ResultStore | str | None = None) -> Run:
    """An earlier run as it ended: its graph and the results it produced, from the store.

    Nothing runs. Use it to go back to a previous version of a report after edits
    (``rolled.results``), or to display it.
    """
    from .store import open_store

    opened = open_store(store)
    try:
        record = await opened.load_run(run_id)
        if record is None:
            raise RunError(f"no run {run_id!r} in the store {opened.url}")
        header = record.header
        graph = TaskGraph.from_plan(header["graph"])
        keys: dict[str, str] = dict(header.get("keys") or {})
        found = await opened.get_many(keys.values())
    finally:
        if opened is not store:
            await opened.close()
    old = Run(
        graph,
        run_id=run_id,
        options=replace(RunOptions(), **_known_options(header.get("options") or {})),
        store=opened,
        owns_store=False,
        actions=Actions(threads=ThreadRunner(1)),
    )
    old.keys = keys
    for tid, key in keys.items():
        if key in found:
            old.results[tid] = found[key]
            old.status[tid] = "done"
        entry = record.tasks.get(tid, {})
        if key not in found:
            ended = entry.get("status")
            old.status[tid] = ended if ended in ("failed", "skipped", "cancelled") else "pending"
            if entry.get("error"):
                old.errors[tid] = entry["error"]
        old.attempts[tid] = entry.get("attempts", 0)
        if entry.get("start") is not None and entry.get("end") is not None:
            old.timeline[tid] = (entry["start"], entry["end"])
    old.state = header.get("state", "finished")
    old.error = header.get("error")
    old.started_at = header.get("created")
    old.finished_at = header.get("finished")
    return old


def _known_options(saved: Mapping[str, Any]) -> dict[str, Any]:
    names = set(RunOptions.__dataclass_fields__)
    return {k: v for k, v in saved.items() if k in names}


class Orchestrator:
    """Defaults (store, LLM, limits, functions) shared by repeated runs.

    ``orch.start(graph)`` / ``await orch.run(graph)`` / ``await orch.resume(id)``
    take the same keyword options as ``orchestra_nb.run``; per-call values win.
    """

    def __init__(
        self,
        *,
        store: ResultStore | str | None = None,
        llm: LLM | str | None = None,
        **defaults: Any,
    ) -> None:
        from .store import open_store

        self.store = open_store(store, signing_key=defaults.pop("signing_key", None))
        self.llm = llm
        self.defaults = defaults
        self.runs: dict[str, Run] = {}

    def _options(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        merged = {**self.defaults, **overrides}
        merged.setdefault("store", self.store)
        if self.llm is not None:
            merged.setdefault("llm", self.llm)
        return merged

    def start(
        self, graph: TaskGraph | Any, runner: Callable[..., Any] | None = None, **overrides: Any
    ) -> Run:
        started = start(graph, runner, **self._options(overrides))
        self.runs[started.id] = started
        return started

    async def run(
        self, graph: TaskGraph | Any, runner: Callable[..., Any] | None = None, **overrides: Any
    ) -> Run:
        return await self.start(graph, runner, **overrides)

    async def resume(
        self, run_or_id: Run | str, runner: Callable[..., Any] | None = None, **overrides: Any
    ) -> Run:
        resumed = await resume(run_or_id, runner, **self._options(overrides))
        self.runs[resumed.id] = resumed
        return resumed

    async def history(self, *, limit: int = 50) -> list[dict[str, Any]]:
        return await history(self.store, limit=limit)

    async def rollback(self, run_id: str) -> Run:
        return await rollback(run_id, store=self.store)

    async def clear_cache(self) -> int:
        """Delete every stored result and run record in this store's namespace."""
        return await self.store.clear()

    async def invalidate(
        self, graph: TaskGraph, task_ids: Iterable[str], *, runner: Callable[..., Any] | None = None
    ) -> int:
        """Forget the cached results of some tasks and their descendants."""
        opts = self._options({})
        keys = graph_cache_keys(
            graph, runner=runner, llm=opts.get("llm"), functions=opts.get("functions")
        )
        doomed: set[str] = set()
        for tid in task_ids:
            doomed |= {tid, *graph.descendants(tid)}
        removed = 0
        for tid in doomed:
            removed += bool(await self.store.delete(keys[tid]))
        return removed

    async def aclose(self) -> None:
        await self.store.close()

    async def __aenter__(self) -> Orchestrator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
