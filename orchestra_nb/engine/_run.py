"""``Run``: the handle a user holds for one execution of a TaskGraph.

It is a read-only view of the run's live state (statuses, results, errors,
attempts, timeline, token usage, events) plus three verbs that delegate to the
driver: ``cancel``, ``await`` and ``subscribe``. It drives nothing itself, so a
``Run`` can also stand for a run that ended long ago (``rollback``), with no
driver behind it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

from .._errors import RunError, StoreUnavailableError, TaskFailedError

if TYPE_CHECKING:
    from .._actions import Actions
    from .._budget import Budget
    from .._events import Event, EventLog
    from .._plan import Task, TaskGraph
    from .._resources import Resources, TokenRate
    from ..llm import Usage
    from ..store import ResultStore
    from ._driver import Driver
    from ._options import RunOptions
    from ._revisions import Replanner, Revision
    from ._state import Progress, RunState

log = logging.getLogger("orchestra_nb")


class Run:
    """One execution of a TaskGraph: live status while it runs, results after.

    ``await run`` waits for the end and returns the run; ``run.cancel()`` cancels
    everything, ``run.cancel(task_id)`` one task (its descendants are skipped).
    ``status``, ``results``, ``errors``, ``attempts`` and ``timeline`` are live
    dicts keyed by task id; ``subscribe(callback)`` delivers every ``Event``.
    ``state`` is the run's own: pending, running, finished, failed or cancelled.
    """

    def __init__(
        self,
        graph: TaskGraph,
        live: RunState,
        *,
        options: RunOptions,
        driver: Driver | None = None,
        store: ResultStore | None = None,
        store_spec: ResultStore | str | None = None,
        llm_source: dict[str, str] | None = None,
        revisions: Iterable[Revision] = (),
    ) -> None:
        self.id = live.run_id
        self._revisions = list(revisions)  # for a run loaded from its record
        self._graph = graph
        self.options = options
        self.store = store if driver is None else driver.records.store
        self.store_spec = store_spec  # what the user passed: a later resume opens it again
        self._llm_source = llm_source  # for a run loaded from its record
        self._live = live
        self._driver = driver
        self._main: asyncio.Task[Run] | None = None
        self._awaited = False  # someone awaits the run, so its error reaches them
        self._rate: TokenRate | None = None  # tokens a minute, across resources() calls

    # --- live state ------------------------------------------------------------------

    @property
    def graph(self) -> TaskGraph:
        """The plan this run executes (a revision replaces it)."""
        return self._driver.graph if self._driver is not None else self._graph

    @property
    def status(self) -> dict[str, str]:
        """Task id -> status (see ``orchestra_nb._kinds.STATUSES``)."""
        return self._live.status

    @property
    def results(self) -> dict[str, Any]:
        return self._live.results

    @property
    def errors(self) -> dict[str, str]:
        return self._live.errors

    @property
    def attempts(self) -> dict[str, int]:
        return self._live.attempts

    @property
    def timeline(self) -> dict[str, tuple[float, float]]:
        """Task id -> (start, end) in seconds from the run's start, for finished tasks."""
        return self._live.timeline

    @property
    def keys(self) -> dict[str, str]:
        """Task id -> cache key its result is stored under."""
        return self._live.keys

    @property
    def events(self) -> EventLog:
        return self._live.events

    @property
    def usage_by_task(self) -> dict[str, Usage]:
        return self._live.usage_by_task

    @property
    def batches(self) -> dict[str, str]:
        """Task id -> id of the provider batch its request went in (``llm_batch``)."""
        return {tid: ticket["batch_id"] for tid, ticket in self._live.batches.items()}

    @property
    def state(self) -> str:
        return self._live.state

    @property
    def error(self) -> str | None:
        """Why the run as a whole stopped early (None when it did not)."""
        return self._live.error

    @property
    def started_at(self) -> float | None:
        return self._live.started_at

    @property
    def finished_at(self) -> float | None:
        return self._live.finished_at

    @property
    def pending_writes(self) -> dict[str, tuple[str, Any, dict[str, Any]]]:
        """Results computed while the store was failing, not committed yet."""
        return self._driver.pending_writes if self._driver is not None else {}

    @property
    def actions(self) -> Actions | None:
        """How this run's tasks were executed (runner, LLM, functions)."""
        return self._driver.actions if self._driver is not None else None

    @property
    def llm_source(self) -> dict[str, str] | None:
        """Where this run's LLM answers came from: ``{"kind": "replay", "path": ...}`` for
        a recording replayed offline, ``"openai"`` with the model and host for a live
        server (no secrets), None when no LLM was involved."""
        if self._driver is not None:
            return self._driver.actions.llm_source()
        return self._llm_source

    @property
    def gates(self) -> Any:
        """Which tasks this run gates for approval (``approve=`` as given to ``start``)."""
        return self._driver.approve if self._driver is not None else None

    @property
    def awaiting_approval(self) -> list[str]:
        """Tasks waiting for ``approve`` or ``reject`` now, in plan order."""
        return [tid for tid, s in self._live.status.items() if s == "awaiting_approval"]

    @property
    def lease_owner(self) -> str | None:
        return self._driver.records.lease_owner if self._driver is not None else None

    @property
    def done(self) -> bool:
        """True once the run has ended (or, for a run loaded from a record, always)."""
        return self._main.done() if self._main is not None else self._driver is None

    @property
    def ok(self) -> bool:
        """True when every task finished with a result (done or cached)."""
        return self.state == "finished"

    @property
    def elapsed(self) -> float:
        live = self._live
        end = live.finished_at if live.finished_at is not None else time.time()
        return 0.0 if live.started_at is None else end - live.started_at

    @property
    def usage(self) -> Usage:
        """Tokens this run's tasks spent (this part of the run; see ``spent``)."""
        return self._live.usage_total

    @property
    def spent(self) -> Usage:
        """Tokens the whole run has spent, the parts before a ``resume`` included."""
        return self._live.spent

    @property
    def budget(self) -> Budget | None:
        """What the run may spend (``run(..., budget=...)``), or None."""
        return self.options.budget

    def running(self) -> list[str]:
        """The tasks executing now."""
        return self._driver.running() if self._driver is not None and not self.done else []

    def resources(self) -> Resources:
        """What the run uses now: tokens a minute, money against the budget, tasks in
        flight per pool, this process's memory (``orchestra_nb._resources``)."""
        from .._resources import TokenRate, measure

        if self._rate is None:
            self._rate = TokenRate()
        return measure(self, self._rate)

    def result(self, task_id: str) -> Any:
        """The result of one task; TaskFailedError if it failed, KeyError if it has none."""
        live = self._live
        if task_id in live.results:
            return live.results[task_id]
        if task_id in live.errors:
            raise TaskFailedError(task_id, live.errors[task_id])
        if task_id not in live.status:
            raise KeyError(f"no task {task_id!r} in this run")
        raise KeyError(f"task {task_id!r} has no result ({live.status[task_id]})")

    async def fetch(self, task_id: str) -> Any:
        """A task's result, loaded from the store when a cluster worker left it there."""
        from ..store import resolve

        value = self.result(task_id)
        if self.store is None:
            return value
        return (await resolve(self.store, {task_id: value}))[task_id]

    def progress(self) -> Progress:
        return self._live.progress()

    def gantt(self) -> list[tuple[str, float, float, str, bool]]:
        """(task id, start, end, status, still running) per started task, by start time;
        a task still running ends "now"."""
        live = self._live
        now = live.now()
        rows = []
        for tid, start in live.first_start.items():
            span = live.timeline.get(tid)
            rows.append((tid, start, span[1] if span else now, live.status[tid], span is None))
        rows.sort(key=lambda r: (r[1], r[0]))
        return rows

    # --- verbs -------------------------------------------------------------------------

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every later event; returns an unsubscribe function."""
        self._live.subscribers.append(callback)
        return lambda: self.unsubscribe(callback)

    def unsubscribe(self, callback: Callable[[Event], None]) -> None:
        self._live.subscribers = [cb for cb in self._live.subscribers if cb != callback]

    def cancel(self, task_id: str | None = None) -> None:
        """Cancel the whole run, or one task (its descendants become skipped)."""
        driver = self._driver
        if task_id is not None:
            if task_id not in self.status:
                raise RunError(f"no task {task_id!r} in run {self.id!r}")
            if driver is not None and not self.done:
                driver.cancel_task(task_id)
            return
        if driver is not None and self._main is not None and not self._main.done():
            driver.cancelled = True
            self._main.cancel()

    def approve(self, task_id: str) -> None:
        """Let a task awaiting approval run (or approve a gated task ahead of time)."""
        self._live_driver("approve").approvals.approve(task_id)

    def reject(self, task_id: str, reason: str | None = None) -> None:
        """Skip a task awaiting approval, and its descendants; ``reason`` is recorded."""
        self._live_driver("reject").approvals.reject(task_id, reason)

    def edit_then_approve(self, task_id: str, **fields: Any) -> None:
        """Change a task awaiting approval (``description="..."``, ``params={...}``, any
        field ``TaskGraph.update_task`` takes), then let it run.

        The edit reaches the running plan as a revision (``source="edit"``), applied
        once no task is running; the task's descendants follow the edit. A bad field
        or an edit that breaks the plan raises ``PlanError`` and changes nothing."""
        self._live_driver("approve").approvals.edit_then_approve(task_id, fields)

    def revise(self, graph: TaskGraph, reason: str = "the plan was edited") -> None:
        """Continue this run with ``graph``, an edited copy of ``run.graph``: results
        whose cache key is unchanged are kept, removed tasks leave, the rest runs. It
        is applied once no task is running, and recorded in ``revisions``."""
        self._live_driver("revise").replanning.revise(graph.copy(), reason, source="edit")

    @property
    def revisions(self) -> list[Revision]:
        """Every change of this run's plan so far (each: reason, added, removed, changed,
        outcome), for a run loaded from the store too."""
        if self._driver is not None:
            return list(self._driver.replanning.revisions)
        return list(self._revisions)

    @property
    def proposed_revision(self) -> Revision | None:
        """A revised plan awaiting ``accept_revision`` or ``reject_revision`` (or None)."""
        if self._driver is None or self._driver.replanning.proposed is None:
            return None
        return self._driver.replanning.proposed[1]

    @property
    def proposed_graph(self) -> TaskGraph | None:
        """The plan a proposed revision would run (None when there is no proposal)."""
        if self._driver is None or self._driver.replanning.proposed is None:
            return None
        return self._driver.replanning.proposed[0]

    @property
    def replanner(self) -> Replanner | None:
        """What makes this run's revisions (its LLM's, or the one given); None without."""
        return self._driver.replanning.replanner if self._driver is not None else None

    def replan(self, task_id: str, reason: str | None = None) -> None:
        """Ask for a revised plan now, because of ``task_id`` (a failed task, say)."""
        driver = self._live_driver("replan")
        why = reason or self.errors.get(task_id) or f"task {task_id!r} should be replanned"
        driver.replanning.request(task_id, why)

    async def accept_revision(self) -> None:
        """Run the proposed revision of the plan."""
        await self._live_driver("accept").replanning.accept()

    def reject_revision(self, reason: str | None = None) -> None:
        """Drop the proposed revision: the failure that asked for it stands."""
        self._live_driver("reject").replanning.reject(reason)

    async def extend(self, tasks: Iterable[Task]) -> None:
        """Add tasks to a run started with ``growing=True`` (its plan is still being
        written); they may depend on tasks already in it."""
        await self._live_driver("extend").growth.extend(tasks)

    def seal(self, *, error: str | None = None) -> None:
        """The growing plan is complete (``error``: it turned out unusable — tasks not
        started yet are cancelled, finished ones stay)."""
        self._live_driver("seal").growth.seal(error=error)

    def _live_driver(self, verb: str) -> Driver:
        if self._driver is None or self.done:
            if verb in ("approve", "reject"):
                raise RunError(
                    f"run {self.id!r} is not running: resume it, or use `orchestra-nb {verb}` "
                    f"to record the decision for when it is resumed"
                )
            raise RunError(f"run {self.id!r} is not running")
        return self._driver

    def add_done_callback(self, callback: Callable[[Run], None]) -> None:
        """Call ``callback(run)`` once the run has ended."""
        if self._main is None:
            callback(self)
        else:
            self._main.add_done_callback(lambda _: callback(self))

    def __await__(self) -> Generator[Any, None, Run]:
        if self._main is None:
            if self._driver is None:
                return self._itself().__await__()
            raise RunError("this run was never started; use orchestra_nb.start() or run()")
        self._awaited = True
        return self._main.__await__()

    async def _itself(self) -> Run:
        return self

    # --- starting (called by orchestra_nb.start) ------------------------------------------

    def begin(self) -> Run:
        """Start driving on the running loop; returns the run at once."""
        if self._driver is None or self._main is not None:
            raise RunError(f"run {self.id!r} cannot be started again")
        loop = asyncio.get_running_loop()
        self._main = loop.create_task(self._drive(), name=f"orchestra-run-{self.id}")
        self._main.add_done_callback(self._log_unawaited)
        return self

    async def _drive(self) -> Run:
        assert self._driver is not None
        try:
            await self._driver.drive()
        except StoreUnavailableError as exc:
            exc.run = self  # type: ignore[attr-defined]
            raise
        return self

    def _log_unawaited(self, main: asyncio.Task[Any]) -> None:
        """Nobody may await a run started from a notebook: never let its error vanish."""
        if not self._awaited and not main.cancelled() and main.exception() is not None:
            log.warning("run %s stopped: %s", self.id, main.exception())

    # --- display -----------------------------------------------------------------------

    def __repr__(self) -> str:
        return f"Run({self.id!r}, {self.state}, {self.progress()})"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .._render import graph_mimebundle

        bundle = graph_mimebundle(self.graph, self.status)
        bundle["text/plain"] = f"Run {self.id}: {self.state}\n" + bundle["text/plain"]
        return bundle
