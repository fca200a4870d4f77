"""The DAG widget: the plan drawn by graphviz, live status, editing, and an inspector.

The widget is an observer of a run's events and an editor of a ``TaskGraph``;
it never drives the scheduler. Buttons call a *controller* (the session that
owns the graph and its runs). Edits from the front end arrive as a synced
``edit`` request — exactly what the JavaScript sets and what tests set from
Python — and go through ``TaskGraph``'s validated editing API: a refused edit
(a cycle, say) shows its one-line reason in the widget and changes nothing.

The SVG is laid out once per change of the graph's *structure*; statuses are
applied by the JavaScript as CSS classes, so a run never re-runs ``dot``. Run
events only mark state dirty; a flush at most every 0.1 s sends what changed,
so even a 2,000-task run costs the browser about ten updates a second.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anywidget
import traitlets

from .._errors import OrchestraError, PlanError
from .._events import Event
from .._kinds import KINDS, vocabulary
from ._viewers import view

if TYPE_CHECKING:
    from .._plan import TaskGraph
    from ..engine import Run

FLUSH_EVERY = 0.1  # seconds between front-end updates while a run is live


class Controller(Protocol):
    """What the widget's buttons ask of whoever owns the graph."""

    def start_run(self, *, refresh: bool = False) -> Run | None: ...
    def cancel_run(self, task_id: str | None = None) -> None: ...
    def retry_failed(self, task_ids: Iterable[str] | None = None) -> Run | None: ...
    def graph_edited(self, change: dict[str, Any]) -> None: ...


class DagWidget(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "widget.js"
    _css = Path(__file__).parent / "widget.css"

    # synced state (internal: the JavaScript reads these)
    title = traitlets.Unicode("").tag(sync=True)
    svg = traitlets.Unicode("").tag(sync=True)
    tasks = traitlets.List([]).tag(sync=True)
    statuses = traitlets.Dict({}).tag(sync=True)
    stale = traitlets.List([]).tag(sync=True)
    progress = traitlets.Dict({}).tag(sync=True)
    timeline = traitlets.List([]).tag(sync=True)
    inspector = traitlets.Dict({}).tag(sync=True)
    message = traitlets.Dict({}).tag(sync=True)
    busy = traitlets.Unicode("").tag(sync=True)
    vocabulary = traitlets.Dict(vocabulary()).tag(sync=True)  # kinds and statuses, as data
    # set by the front end
    selected = traitlets.Unicode("").tag(sync=True)
    edit = traitlets.Dict({}).tag(sync=True)

    def __init__(
        self,
        graph: TaskGraph | None = None,
        *,
        controller: Controller | None = None,
        title: str = "",
        **kwargs: Any,
    ) -> None:
        super().__init__(title=title, **kwargs)
        self.graph: TaskGraph | None = None
        self.controller = controller
        self.run: Run | None = None
        self._unsubscribe: Any = None
        self._dirty = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._message_seq = 0
        self.sent_updates = 0  # flushes sent to the front end (for tests and curiosity)
        self.observe(self._on_selected, names="selected")
        self.observe(self._on_edit, names="edit")
        if graph is not None:
            self.set_graph(graph)

    def __repr__(self) -> str:
        size = f"{len(self.graph)} tasks" if self.graph is not None else "no plan yet"
        return f"DagWidget({self.title!r}, {size})"

    # --- what the session calls -------------------------------------------------------

    def set_graph(self, graph: TaskGraph) -> None:
        """Show a (new or edited) graph: lay it out once, refresh everything."""
        self.graph = graph
        with self.hold_sync():
            if self.busy == "planning":
                self.busy = ""
                if self.message.get("level") == "info":
                    self._say("info", "")  # the "planning…" note has served its purpose
            self._relayout()
            if self.selected and self.selected not in graph:
                self.selected = ""
            self._refresh_inspector()

    def set_planning(self, text: str) -> None:
        self.busy = "planning"
        self._say("info", text)

    def show_error(self, message: str) -> None:
        with self.hold_sync():
            if self.busy == "planning":
                self.busy = ""
            self._say("error", message)

    def set_stale(self, ids: Iterable[str]) -> None:
        self.stale = sorted(set(ids))

    def attach_run(self, run: Run) -> None:
        """Follow this run's events (and stop following the previous one)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.run = run
        self._unsubscribe = run.subscribe(self._on_event)
        self.busy = "running"
        self._flush()

    # --- run events, coalesced ------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.kind == "run_finished":
            self._flush()
            return
        self._dirty = True
        if self._flush_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._flush()
                return
            self._flush_handle = loop.call_later(FLUSH_EVERY, self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        self._dirty = False
        run = self.run
        if run is None:
            return
        with self.hold_sync():
            self.statuses = dict(run.status)
            self.progress = self._progress(run)
            self.timeline = self._timeline(run)
            if run.done or run.state not in ("running", "pending"):
                self.busy = ""
                if run.error:
                    self._say("error", run.error)
            self._refresh_inspector()
        self.sent_updates += 1

    @staticmethod
    def _progress(run: Run) -> dict[str, Any]:
        p = run.progress()
        return {
            "text": str(p),
            "total": p.total,
            "done": p.done,
            "cached": p.cached,
            "failed": p.failed,
            "skipped": p.skipped,
            "running": p.running,
            "tokens": p.tokens,
            "elapsed": round(p.elapsed, 2),
            "state": run.state,
            "run_id": run.id,
        }

    @staticmethod
    def _timeline(run: Run) -> list[dict[str, Any]]:
        return [
            {
                "id": tid,
                "start": round(start, 4),
                "end": round(end, 4),
                "status": status,
                "open": still_running,
            }
            for tid, start, end, status, still_running in run.gantt()
        ]

    # --- front-end requests ----------------------------------------------------------------

    def _on_selected(self, change: dict[str, Any]) -> None:
        self._refresh_inspector()

    def _on_edit(self, change: dict[str, Any]) -> None:
        request = dict(change["new"] or {})
        if not request.get("op"):
            return
        try:
            self.apply(request)
        except OrchestraError as exc:
            self._say("error", str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self._say("error", f"cannot {request.get('op')}: {exc}")

    def apply(self, request: dict[str, Any]) -> None:
        """Do what the front end asked: an edit of the graph, or a command."""
        op = request["op"]
        if op in ("run", "cancel", "retry"):
            self._command(op, request)
            return
        graph = self.graph
        if graph is None:
            raise PlanError("there is no plan to edit yet")
        if op == "add_task":
            kind = request.get("kind") or "llm"
            if kind not in KINDS:
                raise PlanError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
            task = graph.add_task(
                name=str(request.get("name") or "").strip() or None,
                description=str(request.get("description") or ""),
                kind=kind,
                dependencies=tuple(request.get("dependencies") or ()),
            )
            change = {"op": op, "id": task.id}
            self.selected = task.id
        elif op == "remove_task":
            graph.remove_task(request["task"])
            change = {"op": op, "id": request["task"]}
        elif op == "add_dependency":
            graph.add_dependency(request["task"], request["dependency"])
            change = {"op": op, "id": request["task"], "dependency": request["dependency"]}
        elif op == "remove_dependency":
            graph.remove_dependency(request["task"], request["dependency"])
            change = {"op": op, "id": request["task"], "dependency": request["dependency"]}
        elif op == "update_task":
            fields = {k: request[k] for k in ("name", "description", "kind") if k in request}
            if "kind" in fields and fields["kind"] not in KINDS:
                raise PlanError(f"unknown kind {fields['kind']!r}: use one of {', '.join(KINDS)}")
            graph.update_task(request["task"], **fields)
            change = {"op": op, "id": request["task"], "fields": sorted(fields)}
        else:
            raise PlanError(f"unknown request {op!r}")
        with self.hold_sync():
            self._relayout()
            self._refresh_inspector()
            self._say("info", _describe(change))
        if self.controller is not None:
            self.controller.graph_edited(change)

    def _command(self, op: str, request: dict[str, Any]) -> None:
        if self.controller is None:
            raise PlanError("this widget is not connected to anything that can run it")
        if op == "run":
            run = self.controller.start_run(refresh=bool(request.get("refresh")))
            if run is not None and run is not self.run:
                self.attach_run(run)
        elif op == "cancel":
            self.controller.cancel_run(request.get("task"))
        else:
            task = request.get("task")
            run = self.controller.retry_failed([task] if task else None)
            if run is not None and run is not self.run:
                self.attach_run(run)

    # --- helpers -------------------------------------------------------------------------

    def _relayout(self) -> None:
        from .._render import render_svg

        graph = self.graph
        assert graph is not None
        self.tasks = [
            {
                "id": t.id,
                "name": t.name,
                "description": t.description,
                "kind": t.kind,
                "dependencies": list(t.dependencies),
                "estimated_time": t.estimated_time,
            }
            for t in graph.tasks.values()
        ]
        try:
            self.svg = render_svg(graph)
        except OrchestraError as exc:
            self.svg = ""
            self._say("error", str(exc))

    def _refresh_inspector(self) -> None:
        tid = self.selected
        graph = self.graph
        if not tid or graph is None or tid not in graph:
            self.inspector = {}
            return
        task = graph.tasks[tid]
        run = self.run
        info: dict[str, Any] = {
            "id": tid,
            "name": task.name,
            "description": task.description,
            "kind": task.kind,
            "dependencies": [{"id": d, "name": graph.tasks[d].name} for d in task.dependencies],
            "dependents": [{"id": d, "name": graph.tasks[d].name} for d in graph.dependents(tid)],
            "estimated_time": task.estimated_time,
            "status": "pending",
            "stale": tid in self.stale,
        }
        if task.arguments:  # as text: what a planner wrote need not be JSON-safe
            from .._actions import describe_arguments

            names = {t.id: t.name for t in graph.tasks.values()}
            info["arguments"] = describe_arguments(task.arguments, names)
        if run is not None and tid in run.status:
            info["status"] = run.status[tid]
            info["attempts"] = run.attempts.get(tid, 0)
            span = run.timeline.get(tid)
            if span is not None:
                info["started"] = round(span[0], 3)
                info["finished"] = round(span[1], 3)
                info["seconds"] = round(span[1] - span[0], 3)
            usage = run.usage_by_task.get(tid)
            if usage is not None:
                info["tokens"] = usage.total_tokens
            if tid in run.errors:
                info["error"] = run.errors[tid]
            if tid in run.results:
                info["result"] = view(run.results[tid])
        self.inspector = info

    def _say(self, level: str, text: str) -> None:
        self._message_seq += 1
        self.message = {"level": level, "text": text, "seq": self._message_seq}

    def close(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._flush_handle is not None:
            with contextlib.suppress(RuntimeError):
                self._flush_handle.cancel()
        super().close()


def _describe(change: dict[str, Any]) -> str:
    op = change["op"]
    if op == "add_task":
        return f"added task {change['id']!r}"
    if op == "remove_task":
        return f"removed task {change['id']!r}"
    if op == "add_dependency":
        return f"{change['id']!r} now depends on {change['dependency']!r}"
    if op == "remove_dependency":
        return f"{change['id']!r} no longer depends on {change['dependency']!r}"
    return f"updated {', '.join(change.get('fields', []))} of {change['id']!r}"
