"""Plans that run while the model is still writing them: ``plan_and_run``.

The planner's answer is read as it streams (``Planner`` with a ``PlanWatcher``).
The first task whose object is complete starts a growing run; every later one
joins it (``run.extend``) as soon as its object is complete and the tasks it
depends on are in — a task naming one not written yet waits for it. When the
answer ends, the whole plan is read and validated:

- usable: it must be exactly what ran (tasks only the finished answer showed,
  such as the last line of a text plan, are added now); the run is sealed and
  ends when its tasks do;
- unusable (a cycle, a duplicate id, an unknown dependency, more tasks than
  allowed, a plan that contradicts a task already started): the run is sealed
  with the reason — tasks not started never start, finished results stay in the
  store under their content keys — and the model is asked again with the reason,
  as ``decompose`` does. The corrected plan runs in a new run once the old one
  has wound down, so everything the old one finished comes from the store.

::

    ask ─► pieces ─► PlanStream ─► whole tasks ─► start(growing) / extend ─► … ─► answer ends
     ▲                                                                           │
     │                                     usable: seal() ─► the run ends ◄──────┤
     └──── ask again with the reason ◄──── unusable: seal(error) ◄───────────────┘
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import OrchestraError, PlanError
from ._plan import Task, TaskGraph
from ._text import first_line

if TYPE_CHECKING:
    from ._budget import Budget
    from ._event_log import EventLogTarget
    from ._events import Event
    from ._executors import Executor
    from .engine import Run
    from .engine._gates import Approve
    from .llm import LLM
    from .store import ResultStore

Runner = Callable[..., Any]


async def plan_and_run(
    goal: str,
    *,
    llm: LLM | str | None = None,
    runner: Runner | None = None,
    max_workers: int = 5,
    store: ResultStore | str | None = "memory://",
    stream: bool = True,
    approve: Approve = None,
    on_failure: str = "skip",
    mode: str = "dag",
    retries: int = 0,
    timeout: float | None = None,  # noqa: ASYNC109 - a task's limit, not this call's
    run_timeout: float | None = None,
    refresh: bool = False,
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
    on_event: Callable[[Event], None] | None = None,
    on_run: Callable[[Run], None] | None = None,
    run_id: str | None = None,
    approval_timeout: float | None = None,
    max_replans: int = 2,
    max_tasks: int = 12,
    min_tasks: int = 3,
    max_attempts: int = 3,
    max_continuations: int = 2,
    context: str | None = None,
    budget: Budget | None = None,
    log: EventLogTarget = None,
    llm_batch: bool = False,
) -> Run:
    """Plan ``goal`` with ``llm`` and run the plan; return the finished ``Run``.

    With ``stream=True`` tasks start while the model is still writing the plan
    (see the module docstring); with ``stream=False`` the plan is made first,
    then run. Either way the plan is the one ``decompose`` would give and the run
    is the one ``run`` would make of it.

    Run options are those of ``orchestra_nb.start`` (``runner``, ``max_workers``,
    ``store``, ``approve``, ``on_failure``, ...); planning options those of
    ``decompose`` (``max_tasks``, ``max_attempts``, ``context``, ...). The planner
    is offered the Python functions registered with ``@task_function`` and those
    in ``functions``. ``on_run`` is called with each run as it starts — the first
    when the first task is complete, another when an unusable plan had to be
    asked for again — so a caller can show it (a progress bar, a widget).
    ``run_id`` names the first run; a corrected plan's run gets it with ``-2``,
    ``-3``... appended. ``refresh=True`` ignores stored results in the first run; a
    corrected plan reuses what the first one computed.

    Raises ``PlanError`` when no usable plan came after ``max_attempts`` answers
    (what ran meanwhile stays in the store), and what ``decompose`` or ``start``
    raise otherwise.
    """
    from ._actions import registered_functions
    from ._decompose import Planner
    from .engine import start

    planner = Planner(
        goal,
        llm=llm,
        max_attempts=max_attempts,
        max_tasks=max_tasks,
        min_tasks=min_tasks,
        functions=_offered(registered_functions(), functions),
        context=context,
        max_continuations=max_continuations,
    )
    shared = _shared_store(store)
    started: list[Run] = []

    def begin(graph: TaskGraph, *, growing: bool) -> Run:
        run = start(
            graph,
            runner,
            llm=planner.model,
            store=shared,
            max_workers=max_workers,
            mode=mode,
            retries=retries,
            timeout=timeout,
            run_timeout=run_timeout,
            refresh=refresh and not started,
            run_id=run_id and (f"{run_id}-{len(started) + 1}" if started else run_id),
            functions=functions,
            executor=executor,
            progress=progress,
            on_event=on_event,
            approve=approve,
            approval_timeout=approval_timeout,
            on_failure=on_failure,
            max_replans=max_replans,
            growing=growing,
            budget=budget,
            log=log,
            llm_batch=llm_batch,
        )
        started.append(run)
        if on_run is not None:
            on_run(run)
        return run

    if not stream:
        graph = await planner.plan()
        return await begin(graph, growing=False)
    runs = GrowingRuns(planner.goal, begin)
    try:
        await planner.plan(stream=True, watcher=runs)
    except asyncio.CancelledError:
        runs.cancel()
        raise
    except BaseException as exc:
        runs.stop(f"planning stopped: {exc}")
        await runs.settle()
        raise
    assert runs.run is not None
    return await runs.run


class GrowingRuns:
    """The ``PlanWatcher`` that runs a plan while it streams (see the module docstring).

    ``begin(graph, growing=...)`` starts a run. ``run`` is the current one; runs
    of answers that turned out unusable are sealed with the reason and waited
    for before the next run starts, so what they finished is in the store.
    """

    def __init__(self, goal: str, begin: Callable[..., Run]) -> None:
        self.goal = goal
        self._begin = begin
        self.run: Run | None = None
        self.abandoned: list[Run] = []

    async def tasks(self, tasks: list[Task]) -> None:
        if self.run is None:
            await self.settle()
            first, *tasks = tasks
            self.run = self._begin(TaskGraph([first], goal=self.goal), growing=True)
        if tasks:
            await self.run.extend(tasks)

    async def unusable(self, error: PlanError) -> None:
        self.stop(f"the plan cannot be used: {error}")

    async def accept(self, graph: TaskGraph) -> None:
        run = self.run
        if run is None:  # no task was whole before the answer ended
            await self.settle()
            self.run = self._begin(graph, growing=False)
            return
        ran = run.graph.tasks
        missing = [graph.tasks[tid] for tid in graph.topological_order() if tid not in ran]
        if missing:  # whole only once the answer ended (a text plan's last line)
            await run.extend(missing)
            ran = run.graph.tasks
        unplanned = [tid for tid in ran if tid not in graph.tasks]
        changed = [tid for tid, task in graph.tasks.items() if ran.get(tid) != task]
        if unplanned or changed:
            raise PlanError(
                "the finished plan is not what ran: "
                + "; ".join(
                    part
                    for part in (
                        unplanned and f"it has no task {', '.join(map(repr, unplanned))}",
                        changed and f"it changes {', '.join(map(repr, changed))}",
                    )
                    if part
                ),
                ids=[*unplanned, *changed],
            )
        run.seal()

    def stop(self, reason: str) -> None:
        """The current run's plan will not be completed: seal it with ``reason``."""
        run, self.run = self.run, None
        if run is not None:
            if not run.done:
                run.seal(error=reason)
            self.abandoned.append(run)

    def cancel(self) -> None:
        for run in (*self.abandoned, self.run):
            if run is not None and not run.done:
                run.cancel()

    async def settle(self) -> None:
        """Wait for the abandoned runs to wind down (their results are then stored)."""
        for run in self.abandoned:
            with contextlib.suppress(OrchestraError):
                await run


def _offered(
    registered: Mapping[str, Any],
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None,
) -> dict[str, str]:
    """Name -> one-line description of every Python function the planner may use."""
    offered = {name: entry.summary for name, entry in registered.items()}
    if functions is None:
        return offered
    items = (
        functions.items()
        if isinstance(functions, Mapping)
        else ((getattr(f, "__name__", str(f)), f) for f in functions)
    )
    for name, func in items:
        offered[name] = first_line(getattr(func, "func", func))
    return offered


def _shared_store(store: ResultStore | str | None) -> ResultStore | str | None:
    """An unnamed ``memory://`` store opened once, so a corrected plan's run finds what the
    first run stored; any other store is opened by each run, as usual."""
    if isinstance(store, str):
        from .store import open_store, scheme_of

        if scheme_of(store) == "memory" and store.split("://", 1)[1].split("?", 1)[0] == "":
            return open_store(store)
    return store
