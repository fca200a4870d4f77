"""``Orchestration``: what ``%%orchestrate --name report`` binds as ``report``.

It owns one plan (a ``TaskGraph``), its widget and its runs, and it is the
widget's controller: Run, Cancel and Retry land here, and so do a person's
decisions — approve, reject, edit-then-approve a task awaiting approval, Replan
a failed task, accept or reject a proposed revision. Planned with ``--run``,
the plan streams: tasks start as the model writes them, and the widget is handed
the growing plan (``set_graph``) as tasks are added. Planning and runs are
tasks on the kernel's running loop, so cells return at once; ``await report``
waits for both, and so does ``%%orchestrate --wait`` (through the one
nested-loop helper).

When a revision of the running plan is applied, the session's plan becomes the
run's revised plan (and the widget shows it), so the next run starts from it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import OrchestraError, PlanError, RunError
from .._text import shorten

log = logging.getLogger("orchestra_nb")

if TYPE_CHECKING:
    from .._approval import ApprovalRequest
    from .._estimate import Estimate
    from .._events import Event
    from .._plan import TaskGraph
    from ..engine import Revision, Run
    from ..llm import LLM
    from ._widget import DagWidget


GROWTH_EVERY = 0.25  # seconds between widget updates while a streamed plan grows
# what %%orchestrate's options may hold that plan_and_run takes as well
_PLAN_AND_RUN_OPTIONS = frozenset(
    {"max_workers", "mode", "retries", "timeout", "executor", "runner", "functions", "budget",
     "approve", "approval_timeout", "on_failure", "max_replans"}
)  # fmt: skip


class Orchestration:
    """A plan, its widget and its runs — the object a notebook works with."""

    def __init__(
        self,
        name: str,
        *,
        goal: str | None = None,
        llm: LLM | None = None,
        store: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        from ._widget import DagWidget

        self.name = name
        self.goal = goal
        self.llm = llm
        self.store = store
        self.options = dict(options or {})
        self.graph: TaskGraph | None = None
        self.runs: list[Run] = []
        self.widget: DagWidget = DagWidget(controller=self, title=name)
        self._planning: asyncio.Task[Any] | None = None
        self._error: Exception | None = None

    # --- state ----------------------------------------------------------------------------

    @property
    def run(self) -> Run | None:
        """The latest run (None before the first)."""
        return self.runs[-1] if self.runs else None

    @property
    def results(self) -> dict[str, Any]:
        return dict(self.run.results) if self.run else {}

    @property
    def status(self) -> dict[str, str]:
        return dict(self.run.status) if self.run else {}

    @property
    def report(self) -> Any:
        """The result of the plan's last task (its final deliverable), once it exists."""
        if self.graph is None or self.run is None:
            return None
        sinks = self.graph.sinks()
        return self.run.results.get(sinks[-1]) if sinks else None

    @property
    def planning(self) -> bool:
        return self._planning is not None and not self._planning.done()

    # --- planning ---------------------------------------------------------------------------

    def set_graph(self, graph: TaskGraph) -> None:
        self.graph = graph
        if graph.goal:
            self.goal = graph.goal
        self.widget.set_graph(graph)
        self._error = None

    def plan(
        self,
        goal: str,
        *,
        max_tasks: int = 12,
        then_run: bool = False,
        refresh: bool = False,
        stream: bool = True,
    ) -> None:
        """Ask the LLM for a plan in the background; the widget shows it when it arrives.

        With ``then_run`` it runs (``refresh`` recomputes every task); with ``stream``
        too (the default) tasks start while the model is still writing the plan
        (``plan_and_run``): the widget is given the growing plan as tasks are added,
        and follows the run from its first task.
        """
        from .._actions import registered_functions
        from .._decompose import decompose

        if self.llm is None:
            raise RunError("no LLM to plan with")
        self.goal = goal
        model = getattr(self.llm, "model", "the model")
        self.widget.set_planning(f"Planning with {model}: {shorten(goal)}")
        if then_run and stream:
            self._planning = asyncio.get_running_loop().create_task(
                self._plan_and_run(goal, max_tasks=max_tasks, refresh=refresh)
            )
            self._planning.add_done_callback(_retrieve)
            return
        functions = {name: entry.summary for name, entry in registered_functions().items()}

        async def planning() -> TaskGraph:
            try:
                graph = await decompose(
                    goal, llm=self.llm, max_tasks=max_tasks, functions=functions or None
                )
                self.set_graph(graph)
                if then_run:
                    self.start(refresh=refresh)
            except Exception as exc:
                self._background_failed("planning", exc)
                raise
            return graph

        self._planning = asyncio.get_running_loop().create_task(planning())
        self._planning.add_done_callback(_retrieve)

    async def _plan_and_run(self, goal: str, *, max_tasks: int, refresh: bool) -> Run:
        from .._streaming import plan_and_run
        from ..engine import new_run_id

        options = {k: v for k, v in self.options.items() if k in _PLAN_AND_RUN_OPTIONS}
        try:
            run = await plan_and_run(
                goal,
                llm=self.llm,
                store=self.store,
                max_tasks=max_tasks,
                refresh=refresh,
                run_id=f"{self.name}-{new_run_id()}",
                progress=False,
                on_run=self._follow_growing,
                **options,
            )
        except Exception as exc:
            self._background_failed("planning", exc)
            raise
        self._show_growing(run)
        return run

    def _follow_growing(self, run: Run) -> None:
        """A run whose plan is still streaming in: the widget gets its plan now and again,
        at most every ``GROWTH_EVERY`` seconds, as tasks are added."""
        pending: list[asyncio.TimerHandle] = []

        def refresh() -> None:
            pending.clear()
            if self.run is run:
                self._show_growing(run)

        def on_event(event: Any) -> None:
            if event.kind == "task_added" and not pending:
                loop = asyncio.get_running_loop()
                pending.append(loop.call_later(GROWTH_EVERY, refresh))

        self._show_growing(run)
        self._attach(run)
        run.subscribe(on_event)

    def _show_growing(self, run: Run) -> None:
        # a copy: edits made in the widget must not reach the running plan
        self.graph = run.graph.copy()
        self.widget.set_graph(self.graph)

    # --- running ----------------------------------------------------------------------------

    def start(
        self, *, refresh: bool | Iterable[str] = False, only: Iterable[str] | None = None
    ) -> Run:
        """Run the current plan; what is cached comes from the store. ``only``: just these
        tasks and their descendants (see ``orchestra_nb.start``)."""
        from ..engine import new_run_id, start

        if self.graph is None:
            raise PlanError("there is no plan yet" + (" (still planning)" if self.planning else ""))
        if self.run is not None and not self.run.done:
            raise RunError(f"run {self.run.id} of {self.name!r} is still going; cancel it first")
        run = start(
            self.graph,
            llm=self.llm,
            store=self.store,
            refresh=refresh,
            only=only,
            progress=False,
            # the name leads the id, so `%orchestra show NAME` finds it after a restart
            run_id=f"{self.name}-{new_run_id()}",
            **self.options,
        )
        self._attach(run)
        return run

    async def estimate(self) -> Estimate:
        """What running the current plan would cost, with this orchestration's LLM, store
        and options (``orchestra_nb.estimate``); ``str(est)`` is the line to show before
        Run: "≈ 42k tokens · ≈ $0.08 · ≈ 6 min; 5 tasks cached"."""
        from .._estimate import estimate

        if self.graph is None:
            raise PlanError("there is no plan yet" + (" (still planning)" if self.planning else ""))
        options = self.options
        budget = options.get("budget")
        return await estimate(
            self.graph,
            llm=self.llm,
            store=self.store,
            runner=options.get("runner"),
            functions=options.get("functions"),
            max_workers=options.get("max_workers", 5),
            mode=options.get("mode", "dag"),
            prices=budget.prices if budget is not None else None,
        )

    def resume(self, run_id: str) -> None:
        """Continue a run recorded in the store (after a kernel restart), in the background."""
        from ..engine import start_resume

        self.widget.set_planning(f"Loading run {run_id} from the store…")

        async def resuming() -> Run:
            try:
                run = await start_resume(
                    run_id, store=self.store, llm=self.llm, progress=False, **self.options
                )
                self.set_graph(run.graph)
                self._attach(run)
            except Exception as exc:
                self._background_failed("resuming", exc)
                raise
            return run

        self._planning = asyncio.get_running_loop().create_task(resuming())
        self._planning.add_done_callback(_retrieve)

    def show_record(self, record: Any) -> None:
        """Show a run recorded in the store (its plan and how each task ended), not live."""
        from .._plan import TaskGraph

        graph = TaskGraph.from_plan(record.header["graph"])
        self.set_graph(graph)
        statuses = {
            tid: str(entry.get("status") or "pending")
            for tid, entry in record.tasks.items()
            if tid in graph
        }
        state = record.header.get("state", "?")
        self.widget.show_statuses(
            statuses,
            note=f"run {record.run_id} ({state}), read from the store: "
            f"`%orchestra resume {record.run_id}` continues it, Run starts a new run",
        )

    def _background_failed(self, what: str, exc: Exception) -> None:
        """An error in planning or resuming: shown in the widget, logged, kept for ``await``."""
        from .._text import error_line

        self._error = exc
        if not isinstance(exc, OrchestraError):
            log.error("%s %r failed", what, self.name, exc_info=exc)
        self.widget.show_error(f"{what} failed: {error_line(exc)}")

    def _attach(self, run: Run) -> None:
        self.runs.append(run)
        self.widget.set_stale(())
        self.widget.attach_run(run)
        run.subscribe(lambda event: self._follow_revisions(run, event))

    def _follow_revisions(self, run: Run, event: Event) -> None:
        """An applied revision changes the plan: show the run's plan (soon, not inside the
        run's own call: drawing it takes a moment)."""
        if event.kind == "revision" and event.data.get("stage") == "applied":
            asyncio.get_running_loop().call_soon(self._take_plan_of, run)

    def _take_plan_of(self, run: Run) -> None:
        if run is self.run:
            self.set_graph(run.graph.copy())

    # --- the widget's controller ------------------------------------------------------------

    def start_run(self, *, refresh: bool = False, only: Iterable[str] | None = None) -> Run | None:
        try:
            return self.start(refresh=refresh, only=only)
        except OrchestraError as exc:
            self.widget.show_error(str(exc))
            return None

    def retry_failed(self, task_ids: Iterable[str] | None = None) -> Run | None:
        """Run again: the given tasks (default: every failed, skipped and cancelled one)
        and their descendants execute; the rest comes from the store."""
        return self.start_run(only=list(task_ids) if task_ids is not None else None)

    def cancel_run(self, task_id: str | None = None) -> None:
        if self.run is not None and not self.run.done:
            self.run.cancel(task_id)

    # --- a person in the loop (the widget's approval and revision controls) ------------------

    @property
    def awaiting_approval(self) -> list[str]:
        """Tasks of the current run waiting for ``approve`` or ``reject``."""
        return self.run.awaiting_approval if self.run is not None and not self.run.done else []

    def approval_request(self, task_id: str) -> ApprovalRequest:
        """What a person should see before deciding on ``task_id``: its prompt, inputs…"""
        from .._approval import approval_request

        return approval_request(self._current_run(), task_id)

    def approve(self, task_id: str) -> None:
        """Let a task awaiting approval run."""
        self._live_run().approve(task_id)

    def reject(self, task_id: str, reason: str | None = None) -> None:
        """Skip a task awaiting approval and its descendants (or replan, when the run
        replans failures)."""
        self._live_run().reject(task_id, reason)

    def edit_then_approve(self, task_id: str, **fields: Any) -> None:
        """Change a task awaiting approval (``description=``, ``name=``, ``params=``…),
        then let it run. The edit reaches the running run as a revision, applied once
        no task is running; the session's plan then shows it."""
        self._live_run().edit_then_approve(task_id, **fields)

    @property
    def proposed_revision(self) -> Revision | None:
        """A revised plan of the current run awaiting ``accept_revision``/``reject_revision``."""
        return self.run.proposed_revision if self.run is not None else None

    @property
    def proposed_graph(self) -> TaskGraph | None:
        """The plan the proposed revision would run (compare it with ``run.graph``)."""
        return self.run.proposed_graph if self.run is not None else None

    @property
    def revisions(self) -> list[Revision]:
        """The revisions of the current run's plan (each: reason, added, removed, changed)."""
        return self.run.revisions if self.run is not None else []

    def replan(self, task_id: str, reason: str | None = None) -> None:
        """Ask the run's replanner for a revised plan because of ``task_id`` (a failed task).

        While the run goes on, the revision is made in it. After it ended, the run is
        continued (same id, in the background; ``await`` the session to wait): the
        revision is made first — proposed for ``accept_revision`` when the run has
        approval gates — and then the revised remainder runs; finished results come
        from the store (or the ended run) by their keys."""
        run = self._current_run()
        if task_id not in run.graph:
            raise RunError(f"no task {task_id!r} in run {run.id}")
        if not run.done:
            run.replan(task_id, reason)
            return
        if run.replanner is None:
            raise RunError(
                f"run {run.id} has no replanner: plan with an LLM (or pass replanner= in "
                "the options)"
            )
        from ..engine import start_resume

        why = reason or run.errors.get(task_id) or f"task {task_id!r} should be replanned"
        self.widget.set_planning(f"Replanning {task_id}…")

        async def continuing() -> Run:
            try:
                continued = await start_resume(run, progress=False)
            except OrchestraError as exc:
                self._error = exc
                self.widget.show_error(str(exc))
                raise
            continued.replan(task_id, why)  # before it starts: nothing runs until revised
            self._attach(continued)
            return continued

        self._planning = asyncio.get_running_loop().create_task(continuing())
        self._planning.add_done_callback(_retrieve)

    def accept_revision(self) -> asyncio.Task[None]:
        """Run the proposed revision; returns the task applying it (await it to wait)."""
        run = self._live_run()
        if run.proposed_revision is None:
            raise RunError("no revision of this run is awaiting a decision")
        accepting = asyncio.get_running_loop().create_task(run.accept_revision())
        accepting.add_done_callback(self._show_failure)
        return accepting

    def reject_revision(self, reason: str | None = None) -> None:
        """Drop the proposed revision: the failure that asked for it stands."""
        self._live_run().reject_revision(reason)

    def _show_failure(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and isinstance(task.exception(), OrchestraError):
            self.widget.show_error(str(task.exception()))

    def _current_run(self) -> Run:
        if self.run is None:
            raise RunError(f"{self.name!r} has not run yet")
        return self.run

    def _live_run(self) -> Run:
        run = self._current_run()
        if run.done:
            raise RunError(f"run {run.id} of {self.name!r} has ended ({run.state})")
        return run

    def graph_edited(self, change: dict[str, Any]) -> None:
        self.widget.set_stale(self.stale_ids())

    def stale_ids(self) -> set[str]:
        """Tasks the next run computes again: edited, or downstream of an edit or of a
        changed function. Keys come from the same function the run uses."""
        from .._actions import graph_cache_keys

        run, graph = self.run, self.graph
        if run is None or graph is None:
            return set()
        try:
            keys = graph_cache_keys(
                graph,
                runner=self.options.get("runner"),
                llm=self.llm,
                functions=self.options.get("functions"),
            )
        except OrchestraError:  # a task that cannot run yet (its function is not registered)
            changed = {tid for tid in graph.tasks if graph.tasks[tid] != run.graph.tasks.get(tid)}
            return changed.union(*(graph.descendants(tid) for tid in changed))
        return {tid for tid, key in keys.items() if run.keys.get(tid) != key}

    def cancel_all(self) -> None:
        """Stop planning and the current run (what the kernel interrupt does)."""
        if self._planning is not None and not self._planning.done():
            self._planning.cancel()
        if self.run is not None and not self.run.done:
            self.run.cancel()

    # --- waiting and display --------------------------------------------------------------------

    def __await__(self) -> Generator[Any, None, Any]:
        return self.wait().__await__()

    async def wait(self) -> Run | TaskGraph | None:
        """Wait for planning and then for the latest run; return the run (or the plan).

        The widget's drawing is waited for too, so a cell that waits (``--wait``,
        ``await report``) ends with the plan drawn: what a notebook saves at that
        point (nbconvert, papermill) holds the positions, not a pending layout.
        """
        if self._planning is not None:
            await asyncio.shield(self._planning)
        result = await self.run if self.run is not None else self.graph
        await self.widget.laid_out()
        return result

    def __repr__(self) -> str:
        return self._text()

    def _text(self) -> str:
        from .._render import graph_text

        if self.graph is None:
            state = f"failed: {self._error}" if self._error else "planning…"
            return f"Orchestration {self.name!r}: {state}"
        run = self.run
        head = f"Orchestration {self.name!r}"
        if run is not None:
            p = run.progress()
            parts = [run.state, f"{p.done + p.cached}/{p.total} done"]
            parts += [f"{n} {k}" for k, n in (("failed", p.failed), ("skipped", p.skipped),
                                              ("cached", p.cached)) if n]  # fmt: skip
            head += ": run " + " · ".join(parts)
        return head + "\n" + graph_text(self.graph, run.status if run else None)

    def live_view(self) -> _LiveView:
        """Just the live widget (its text fallback does not change as the run goes)."""
        return _LiveView(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        from .._render import graph_mimebundle
        from ._nested import wait

        text = self._text()
        bundle: dict[str, Any] = {"text/plain": text}
        if self.graph is not None:
            # the static drawing beside the widget (for viewers without widgets) runs `dot`:
            # in a thread, the kernel's loop turning meanwhile
            graph, statuses = self.graph.copy(), self.status or None
            bundle.update(wait(asyncio.to_thread(graph_mimebundle, graph, statuses, text=text)))
        widget_view = self.widget._repr_mimebundle_()
        if isinstance(widget_view, tuple):
            widget_view = widget_view[0]
        bundle.update({k: v for k, v in (widget_view or {}).items() if k != "text/plain"})
        return bundle


class _LiveView:
    def __init__(self, orchestration: Orchestration):
        self.orchestration = orchestration

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        view = self.orchestration.widget._repr_mimebundle_()
        if isinstance(view, tuple):
            view = view[0]
        bundle = {k: v for k, v in (view or {}).items() if k != "text/plain"}
        bundle["text/plain"] = f"Orchestration {self.orchestration.name!r} (live widget)"
        return bundle


def _retrieve(task: asyncio.Task[Any]) -> None:
    """The error is shown in the widget and raised by ``await``; do not let asyncio warn."""
    if not task.cancelled():
        task.exception()
