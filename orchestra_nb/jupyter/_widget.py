"""The DAG widget: the plan laid out by graphviz, live status, editing, and an inspector.

The widget is an observer of a run's events and an editor of a ``TaskGraph``;
it never drives the scheduler. Buttons call a *controller* (the session that
owns the graph and its runs). Requests from the front end arrive as a synced
``edit`` — exactly what the JavaScript sets and what tests set from Python —
and go through ``TaskGraph``'s validated editing API: a refused edit (a cycle,
say) shows its one-line reason in the widget and changes nothing. Any other
exception in a request or in a run the widget follows is shown in the widget
and logged, never swallowed.

Drawing: Python sends *positions* (``layout``, computed by ``dot`` in a worker
thread so the kernel's loop never waits for it; ``layout.state`` is
``"pending"`` until they arrive) and the JavaScript draws the nodes itself,
coloured by status through CSS, so a run never lays anything out again. Big
plans are drawn with related tasks collapsed into groups (see ``_layout``).
Run events only mark state dirty; a flush at most every 0.1 s sends what
changed, so even a 2,000-task run costs the browser about ten updates a second.

    set_graph ──► tasks, layout{state: pending} ──(thread: group + dot)──► layout{state: ready}
    run events ──► (coalesced) statuses, progress, timeline, message, can
    front end ──► selected, edit{op: ...} ──► TaskGraph edits | controller commands
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import anywidget
import traitlets

from .._errors import OrchestraError, PlanError
from .._events import Event
from .._kinds import KINDS, vocabulary
from .._text import error_line
from ._viewers import view

if TYPE_CHECKING:
    from .._plan import TaskGraph
    from ..engine import Run

log = logging.getLogger("orchestra_nb")

FLUSH_EVERY = 0.1  # seconds between front-end updates while a run is live
RETRYABLE = frozenset({"failed", "skipped", "cancelled"})
#: What a group shows when its members differ: the first of these any member is in, else
#: "done" when some member was computed, else "cached".
GROUP_SHOWS = ("failed", "running", "waiting", "ready", "unsaved", "cancelled", "skipped")
GROUP_SHOWS += ("pending",)
_GROUP_MEMBERS_SHOWN = 200  # members a group's inspector lists
_layout_pool: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """One layout thread for every widget: layouts queue rather than compete for 2 cores."""
    global _layout_pool
    if _layout_pool is None:
        _layout_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="onb-layout")
    return _layout_pool


def start_threads() -> None:
    """Start the layout thread, and the running loop's first worker thread (what reads a
    plan given with ``--from``), now: ``%load_ext`` does. Starting a thread waits for it
    to take the interpreter lock, which the cell that first shows a plan should not."""
    _pool().submit(int).result()
    with contextlib.suppress(RuntimeError):  # no running loop: nothing to start
        asyncio.get_running_loop().run_in_executor(None, int)


def _deliver(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], done: concurrent.futures.Future
) -> None:
    """Hand a layout thread's outcome to the loop that asked for it (in the thread). A loop
    closed meanwhile (a kernel shutting down, a finished test) has nobody left to tell."""

    def settle() -> None:
        if future.done():
            return
        if done.exception() is not None:
            future.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            future.set_result(done.result())

    with contextlib.suppress(RuntimeError):  # the loop is closed
        loop.call_soon_threadsafe(settle)


class Controller(Protocol):
    """What the widget's buttons ask of whoever owns the graph."""

    def start_run(self, *, refresh: bool = False) -> Run | None: ...
    def cancel_run(self, task_id: str | None = None) -> None: ...
    def retry_failed(self, task_ids: Iterable[str] | None = None) -> Run | None: ...
    def graph_edited(self, change: dict[str, Any]) -> None: ...


def _look() -> dict[str, Any]:
    from .._render import widget_look

    return widget_look()


class DagWidget(anywidget.AnyWidget):
    _esm = Path(__file__).parent / "widget.js"
    _css = Path(__file__).parent / "widget.css"

    # synced state (internal: the JavaScript reads these)
    title = traitlets.Unicode("").tag(sync=True)
    tasks = traitlets.List([]).tag(sync=True)
    layout = traitlets.Dict({}).tag(sync=True)
    statuses = traitlets.Dict({}).tag(sync=True)
    stale = traitlets.List([]).tag(sync=True)
    progress = traitlets.Dict({}).tag(sync=True)
    timeline = traitlets.List([]).tag(sync=True)
    inspector = traitlets.Dict({}).tag(sync=True)
    message = traitlets.Dict({}).tag(sync=True)
    busy = traitlets.Unicode("").tag(sync=True)
    can = traitlets.Dict({}).tag(sync=True)  # which buttons work now: run, cancel, retry
    vocabulary = traitlets.Dict(vocabulary()).tag(sync=True)  # kinds and statuses, as data
    look = traitlets.Dict(_look()).tag(sync=True)  # colours, marks and shapes, as data
    # set by the front end
    selected = traitlets.Unicode("").tag(sync=True)
    edit = traitlets.Dict({}).tag(sync=True)

    def __init__(
        self,
        graph: TaskGraph | None = None,
        *,
        controller: Controller | None = None,
        title: str = "",
        group_above: int | None = None,
        **kwargs: Any,
    ) -> None:
        from .._layout import GROUP_ABOVE

        super().__init__(title=title, **kwargs)
        self.graph: TaskGraph | None = None
        self.controller = controller
        self.run: Run | None = None
        self.group_above = GROUP_ABOVE if group_above is None else group_above
        self.expanded: set[str] = set()  # groups the user opened
        self.groups: dict[str, list[str]] = {}  # group id -> member ids, as last drawn
        self._unsubscribe: Any = None
        self._dirty = False
        self._flush_handle: asyncio.TimerHandle | None = None
        self._message_seq = 0
        self._layout_version = 0
        self._layout_job: asyncio.Future[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self.sent_updates = 0  # flushes sent to the front end (for tests and curiosity)
        self.observe(self._on_selected, names="selected")
        self.observe(self._on_edit, names="edit")
        self.on_msg(self._on_message)
        if graph is not None:
            self.set_graph(graph)
        else:
            self._update_can()

    def __repr__(self) -> str:
        size = f"{len(self.graph)} tasks" if self.graph is not None else "no plan yet"
        return f"DagWidget({self.title!r}, {size})"

    # --- what the session calls -------------------------------------------------------

    def set_graph(self, graph: TaskGraph) -> None:
        """Show a (new or edited) graph: lay it out (in the background), refresh everything."""
        self.graph = graph
        with self.hold_sync():
            if self.busy == "planning":
                self.busy = ""
                if self.message.get("level") == "info":
                    self._say("info", "")  # the "planning…" note has served its purpose
            self._relayout()
            if self.selected and self.selected not in graph and self.selected not in self.groups:
                self.selected = ""
            self._refresh_inspector()
            self._update_can()

    def set_planning(self, text: str) -> None:
        with self.hold_sync():
            self.busy = "planning"
            self._say("info", text)
            self._update_can()

    def show_error(self, message: str) -> None:
        with self.hold_sync():
            if self.busy == "planning":
                self.busy = ""
            self._say("error", message)
            self._update_can()

    def set_stale(self, ids: Iterable[str]) -> None:
        with self.hold_sync():
            self.stale = sorted(set(ids))
            self._refresh_inspector()

    def show_statuses(self, statuses: dict[str, str], *, note: str = "") -> None:
        """Colour the plan by the statuses of a run that is not live (read from a store)."""
        with self.hold_sync():
            self.statuses = self._with_groups(statuses)
            if note:
                self._say("info", note)
            self._refresh_inspector()
            self._update_can()

    def attach_run(self, run: Run) -> None:
        """Follow this run's events (and stop following the previous one)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.run = run
        self._unsubscribe = run.subscribe(self._on_event)
        with self.hold_sync():
            self.busy = "running"
            self._say("info", f"run {run.id} started")
            self._flush()
        with contextlib.suppress(RuntimeError):  # no loop: nothing to watch from
            self._watcher = asyncio.get_running_loop().create_task(self._watch(run))

    async def _watch(self, run: Run) -> None:
        """Say how the run ended; an exception that stopped it is shown and logged."""
        try:
            await run
        except asyncio.CancelledError:
            if not run.done:
                raise  # the watcher itself was cancelled (the widget closed)
        except Exception as exc:
            log.error("run %s stopped: %s", run.id, exc, exc_info=exc)
            if run is self.run:
                self._flush()
                self._say("error", f"run {run.id} stopped: {error_line(exc)}")
            return
        if run is self.run:
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
            self.statuses = self._with_groups(run.status)
            self.progress = self._progress(run)
            self.timeline = self._timeline(run)
            finished = run.done or run.state not in ("running", "pending")
            if finished and self.busy == "running":
                self.busy = ""
                self._say(*_ending(run))
            self._refresh_inspector()
            self._update_can()
        self.sent_updates += 1

    def _with_groups(self, statuses: dict[str, str]) -> dict[str, str]:
        """Task statuses plus one per drawn group (how its members stand, in one word)."""
        out = {tid: s for tid, s in statuses.items() if tid not in self.groups}
        for gid, members in self.groups.items():
            out[gid] = group_status(statuses.get(m, "pending") for m in members)
        return out

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
            "cancelled": p.cancelled,
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

    def _update_can(self) -> None:
        """Which buttons do something now (the JavaScript greys out the others)."""
        live = self.busy == "running"
        connected = self.controller is not None
        retryable = any(
            s in RETRYABLE for tid, s in self.statuses.items() if tid not in self.groups
        )
        self.can = {
            "run": connected and self.graph is not None and self.busy == "",
            "cancel": connected and live,
            "retry": connected and not live and self.busy == "" and retryable,
            "edit": self.graph is not None and self.busy != "planning",
        }

    # --- front-end requests ----------------------------------------------------------------

    def _on_message(self, widget: Any, content: Any, buffers: Any) -> None:
        """The front end asks whether the kernel is still there (after its comm flickered)."""
        if isinstance(content, dict) and content.get("type") == "ping":
            self.send({"type": "pong"})

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
            self._say("error", f"cannot {request.get('op')}: {error_line(exc)}")
            log.info("widget request %r refused: %s", request.get("op"), exc)
        except Exception as exc:  # a bug or a broken controller: say it, log it, keep going
            log.exception("widget request %r failed", request.get("op"))
            self._say("error", f"cannot {request.get('op')}: {error_line(exc)}")

    def apply(self, request: dict[str, Any]) -> None:
        """Do what the front end asked: an edit of the graph, a view change, or a command."""
        op = request["op"]
        if op in ("run", "cancel", "retry"):
            self._command(op, request)
            return
        if op in ("expand", "collapse"):
            self._expand(op, request.get("group"))
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

    def _expand(self, op: str, group: str | None) -> None:
        if self.graph is None:
            raise PlanError("there is no plan to draw yet")
        if op == "expand":
            if group not in self.groups:
                raise PlanError(f"no group {group!r} in the drawing")
            self.expanded.add(group)
            text = f"expanding {len(self.groups[group]):,} tasks…"
        elif group is None:
            self.expanded.clear()
            text = "collapsing every group…"
        else:
            self.expanded.discard(group)
            text = "collapsing…"
        with self.hold_sync():
            self._say("info", text)
            self._relayout()

    # --- layout ----------------------------------------------------------------------------

    def _relayout(self) -> None:
        """Send the tasks and their positions when the layout thread has them.

        On the loop only a copy-on-write copy of the graph is taken (an edit made while
        the thread works copies the graph first, so the thread's copy never changes);
        the snapshot, the critical path, the browser's task list and ``dot`` itself all
        run in the thread.
        """
        graph = self.graph
        assert graph is not None
        frozen = graph.copy()
        self._layout_version += 1
        version = self._layout_version
        previous = list(self.layout.get("order", ()))
        edges = sum(len(t.dependencies) for t in graph.tasks.values())
        self.layout = {
            **self.layout,
            "state": "pending",
            "version": version,
            "summary": f"{len(graph):,} tasks, {edges:,} dependencies",
        }
        expanded = set(self.expanded)

        def job() -> dict[str, Any] | None:
            if version != self._layout_version:
                return None  # a newer edit already asked for another layout
            return _compute(frozen, previous, expanded, self.group_above)

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # plain Python: nothing to keep turning, lay out now
            self._laid_out(version, job, None)
            return
        future: asyncio.Future[Any] = loop.create_future()
        done = _pool().submit(job)
        done.add_done_callback(lambda f: _deliver(loop, future, f))
        future.add_done_callback(lambda f: self._laid_out(version, None, f))
        self._layout_job = future

    def _laid_out(self, version: int, job: Any, future: asyncio.Future[Any] | None) -> None:
        if version != self._layout_version:
            return
        try:
            result = job() if future is None else future.result()
        except OrchestraError as exc:
            self.layout = {**self.layout, "state": "error", "error": str(exc)}
            self._say("error", str(exc))
            return
        except Exception as exc:
            log.exception("laying out the plan failed")
            self.layout = {**self.layout, "state": "error", "error": error_line(exc)}
            self._say("error", f"cannot draw the plan: {error_line(exc)}")
            return
        if result is None:
            return
        with self.hold_sync():
            self.tasks = result.pop("tasks")
            self.groups = result["groups"]
            task_statuses = {k: v for k, v in self.statuses.items() if k not in result["groups"]}
            self.statuses = self._with_groups(task_statuses)
            result["expanded"] = sorted(self.expanded)
            self.layout = {**result, "state": "ready", "version": version,
                           "summary": self.layout.get("summary", "")}  # fmt: skip
            if self.message.get("text", "").endswith("…") and self.message.get("level") == "info":
                self._say("info", "")  # "expanding…" / "collapsing…" is done
            self._refresh_inspector()

    async def laid_out(self) -> dict[str, Any]:
        """Wait until the drawing's positions are ready (or failed); returns ``layout``."""
        while self._layout_job is not None and not self._layout_job.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._layout_job)
            await asyncio.sleep(0)  # let the done-callback publish the result
        return self.layout

    def drawn_as(self, task_id: str) -> str:
        """The node that shows ``task_id``: its group's id when it is collapsed, else itself."""
        for gid, members in self.groups.items():
            if task_id in members:
                return gid
        return task_id

    # --- inspector ------------------------------------------------------------------------

    def _refresh_inspector(self) -> None:
        sid = self.selected
        graph = self.graph
        if sid and sid in self.groups and graph is not None:
            self.inspector = self._group_info(sid)
            return
        if not sid or graph is None or sid not in graph:
            self.inspector = {}
            return
        tid = sid
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
            "status": self.statuses.get(tid, "pending"),
            "stale": tid in self.stale,
        }
        if task.function:
            info["function"] = task.function
        if task.arguments:  # as text: what a planner wrote need not be JSON-safe
            from .._actions import describe_arguments

            names = {t.id: t.name for t in graph.tasks.values()}
            info["arguments"] = describe_arguments(task.arguments, names)
        group = self.drawn_as(tid)
        if group != tid:
            info["in_group"] = {"id": group, "count": len(self.groups[group])}
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

    def _group_info(self, gid: str) -> dict[str, Any]:
        graph = self.graph
        assert graph is not None
        members = [m for m in self.groups[gid] if m in graph]
        counts: dict[str, int] = {}
        for m in members:
            status = self.statuses.get(m, "pending")
            counts[status] = counts.get(status, 0) + 1
        first = graph.tasks[members[0]] if members else None
        label = next((n[5] for n in self.layout.get("nodes", ()) if n[0] == gid), gid)
        return {
            "id": gid,
            "group": True,
            "name": label,
            "kind": first.kind if first else "",
            "count": len(members),
            "counts": counts,
            "members": [
                {"id": m, "name": graph.tasks[m].name, "status": self.statuses.get(m, "pending")}
                for m in members[:_GROUP_MEMBERS_SHOWN]
            ],
            "status": max(counts, key=counts.__getitem__) if counts else "pending",
        }

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
        if self._watcher is not None and not self._watcher.done():
            with contextlib.suppress(RuntimeError):
                self._watcher.cancel()
        super().close()


def group_status(statuses: Iterable[str]) -> str:
    """One status for a group of tasks (see ``GROUP_SHOWS``)."""
    seen = set(statuses)
    if len(seen) == 1:
        return seen.pop()
    for status in GROUP_SHOWS:
        if status in seen:
            return status
    return "done" if "done" in seen else "cached"


def _compute(
    graph: TaskGraph, previous: list[str], expanded: set[str], above: int
) -> dict[str, Any]:
    """Everything about a drawing that takes time (runs in the layout thread)."""
    from .._layout import compute_layout, group_tasks, snapshot

    rows = snapshot(graph)
    critical = list(graph.critical_path().ids) if len(graph) > 1 else []
    groups = group_tasks(rows, above=above, expanded=expanded)
    layout = compute_layout(rows, groups=groups, critical=critical, previous_order=previous)
    # what the browser needs of every task (search, labels): dependencies travel as
    # edges in the layout, and the inspector sends a task's own on selection
    layout["tasks"] = [{"id": r.id, "name": r.name} for r in rows]
    return layout


def _ending(run: Run) -> tuple[str, str]:
    """The message-bar line for a run that has ended: (level, text)."""
    p = run.progress()
    counts = [f"{p.done + p.cached}/{p.total} done"]
    counts += [f"{n} {what}" for what, n in (("cached", p.cached), ("failed", p.failed),
               ("skipped", p.skipped), ("cancelled", p.cancelled)) if n]  # fmt: skip
    summary = ", ".join(counts)
    if run.state == "cancelled":
        return "warning", f"run {run.id} was cancelled: {summary}"
    if run.state == "finished":
        return "info", f"run {run.id} finished: {summary} in {p.elapsed:.1f} s"
    first = next(iter(run.errors.items()), None)
    why = f" — {first[0]}: {first[1]}" if first else ""
    if run.error:
        why = f" — {run.error}"
    return "error", f"run {run.id} failed: {summary}{why}"


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
