"""The public entry points that run: ``start`` and ``run``.

``start`` assembles a run — options (validated once, in ``RunOptions``), the
store, the actions that execute tasks, the driver and the ``Run`` handle — and
starts it on the running loop. ``run`` awaits it. (``resume`` is in ``_resume``;
``history`` and ``rollback``, which only read, are in ``_history``.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._actions import DEFAULT_INPUT_BUDGET, Actions
from .._budget import Budget, BudgetGate, spent_before
from .._errors import PlanError, RunError
from .._event_log import EventLogTarget, attach_event_log, check_log_target
from .._executors import LocalExecutor
from .._plan import TaskGraph
from ._driver import Carried, Driver
from ._gates import Approve
from ._options import RunOptions
from ._progress import ProgressBar, wants_bar
from ._records import RunRecords
from ._revisions import Replanner, RevisionRequest
from ._run import Run
from ._state import RunState

if TYPE_CHECKING:
    from .._events import Event
    from .._executors import Executor
    from ..llm import LLM
    from ..store import ResultStore

Runner = Callable[..., Any]


def new_run_id() -> str:
    """A sortable, unique run id: ``YYYYmmdd-HHMMSS-xxxxxx``."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def start(
    graph: TaskGraph | Any,
    runner: Runner | None = None,
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
    only: Iterable[str] | None = None,
    pools: Mapping[str, int] | None = None,
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
    on_event: Callable[[Event], None] | None = None,
    input_budget: int = DEFAULT_INPUT_BUDGET,
    signing_key: bytes | str | None = None,
    lease_ttl: float = 30.0,
    approve: Approve = None,
    approval_timeout: float | None = None,
    on_failure: str = "skip",
    max_replans: int = 2,
    replanner: Replanner | None = None,
    growing: bool = False,
    llm_batch: bool = False,
    budget: Budget | None = None,
    log: EventLogTarget = None,
) -> Run:
    """Start running ``graph`` on the running event loop; return the live ``Run`` at once.

    ``await run`` waits for the end. Task failures never raise: they show in
    ``run.status`` and ``run.errors``. What can raise here, before anything runs:
    a bad option, a graph a task of which cannot run (an unregistered function,
    no LLM configured), no running loop.

    - ``graph``: a ``TaskGraph``, or a plan ``TaskGraph.from_plan`` reads.
    - ``runner``: ``(task, inputs) -> result`` (sync or async) for every task;
      without it each task runs its action (``kind``: llm, python, report).
    - ``max_workers``: tasks running at once; ``mode``: ``dag`` (as soon as the
      dependencies are done), ``pipeline`` (one at a time) or ``parallel``
      (independent tasks only).
    - ``store``: where results and run records go (``memory://``,
      ``sqlite:///path.db`` — the default under ``.orchestra/`` — or
      ``redis://host:6379/0``), or an open ``ResultStore``.
    - ``llm``: an ``LLM`` or a spec such as ``"openai:gpt-4o-mini"`` or ``"replay:FILE"``.
    - ``run_id``: choose the run's id (default: time-based and unique).
    - ``retries``, ``backoff``, ``max_backoff``: extra attempts after a failure, with
      exponential backoff and jitter (seconds); ``timeout``: seconds per attempt;
      ``run_timeout``: seconds for the whole run. These are ceilings: a task's own
      ``retries``/``timeout`` can only lower them.
    - ``fail_fast``: cancel everything at the first final failure.
    - ``refresh``: ignore stored results (True), or those of some tasks and their
      descendants; ``only``: run just these tasks and their descendants (with the
      ancestors they need); the others keep their stored results or stay as they are.
    - ``pools``: named capacities (``{"llm": 2}``) that tasks of that kind, or tasks
      with ``resources``, hold while running.
    - ``functions``: Python functions ``kind="python"`` tasks may call, besides those
      registered with ``@task_function``; ``executor``: where some tasks run
      (e.g. a ``DaskExecutor``).
    - ``progress``: a progress bar on stderr (default: in a terminal, not in a
      notebook); ``on_event``: called with every ``Event``.
    - ``input_budget``: tokens of upstream results an LLM task's prompt may hold.
    - ``signing_key``: authenticate stored entries (and allow signed pickle).
    - ``lease_ttl``: seconds another process must wait before taking over a run
      whose owner stopped renewing its lease.
    - ``approve``: tasks that wait for ``run.approve(id)`` before they start —
      ``"all"``, a kind (``"llm"``), task ids, or a predicate on the task — besides
      those whose plan says ``"approval": true``; ``run.reject(id, reason)`` skips
      one and its descendants, ``run.edit_then_approve(id, **fields)`` changes it
      first. ``approval_timeout``: seconds after which a task (or a proposed
      revision) nobody decided on is rejected.
    - ``on_failure``: ``"skip"`` (a failed task's descendants are skipped) or
      ``"replan"`` (the LLM revises the unfinished part of the plan and the run goes
      on with it; at most ``max_replans`` times, never twice for the same failure;
      with approval gates on, a person accepts each revision: ``accept_revision``);
      ``replanner``: make revisions with your own ``async (RevisionRequest) ->
      TaskGraph`` instead. ``run.replan(id)`` asks for one whatever ``on_failure``.
    - ``growing``: the plan is still being written — add tasks with
      ``await run.extend(tasks)`` and end it with ``run.seal()``.
    - ``llm_batch``: send LLM tasks' requests through the provider's Batch API
      (cheaper, answered within 24 h): tasks ready together go in one batch, show as
      ``batched`` (holding no worker slot) and a resumed run waits for the same
      batches. Implied when ``llm`` is a ``BatchLLM`` (pass one to tune polling).
    - ``budget``: ``Budget(tokens=..., usd=...)``, what the run may spend on LLM
      tasks; before one would cross it the run stops starting them (or, with
      ``approve``, asks to go over). Kept for ``resume``; see ``orchestra_nb.Budget``.
    - ``log``: a file path or a ``logging.Logger``: one JSON object per event
      (docs/events.md).
    """

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
        approval_timeout=approval_timeout,
        on_failure=on_failure,
        max_replans=max_replans,
        llm_batch=llm_batch,
        budget=budget,
    )
    return _begin(
        graph,
        options,
        runner=runner,
        store=store,
        llm=llm,
        run_id=run_id,
        refresh=refresh,
        only=only,
        functions=functions,
        executor=executor,
        progress=progress,
        on_event=on_event,
        signing_key=signing_key,
        approve=approve,
        replanner=replanner,
        growing=growing,
        log=log,
    )


async def run(
    graph: TaskGraph | Any,
    runner: Runner | None = None,
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
    only: Iterable[str] | None = None,
    pools: Mapping[str, int] | None = None,
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
    on_event: Callable[[Event], None] | None = None,
    input_budget: int = DEFAULT_INPUT_BUDGET,
    signing_key: bytes | str | None = None,
    lease_ttl: float = 30.0,
    approve: Approve = None,
    approval_timeout: float | None = None,
    on_failure: str = "skip",
    max_replans: int = 2,
    replanner: Replanner | None = None,
    growing: bool = False,
    llm_batch: bool = False,
    budget: Budget | None = None,
    log: EventLogTarget = None,
) -> Run:
    """Run ``graph`` to the end and return the finished ``Run`` (options as in ``start``).

    Task failures do not raise: look at ``run.status`` / ``run.errors`` or call
    ``run.result(id)``. Problems that stop the run itself raise: an invalid
    option, a missing API key, another process holding the run's lease
    (``LeaseError``), an unreachable store (``StoreUnavailableError``, with what
    was computed kept in ``error.run`` for ``resume``).
    """
    return await start(
        graph,
        runner,
        max_workers=max_workers,
        mode=mode,
        store=store,
        llm=llm,
        run_id=run_id,
        retries=retries,
        backoff=backoff,
        max_backoff=max_backoff,
        timeout=timeout,
        run_timeout=run_timeout,
        fail_fast=fail_fast,
        refresh=refresh,
        only=only,
        pools=pools,
        functions=functions,
        executor=executor,
        progress=progress,
        on_event=on_event,
        input_budget=input_budget,
        signing_key=signing_key,
        lease_ttl=lease_ttl,
        approve=approve,
        approval_timeout=approval_timeout,
        on_failure=on_failure,
        max_replans=max_replans,
        replanner=replanner,
        growing=growing,
        llm_batch=llm_batch,
        budget=budget,
        log=log,
    )


def _begin(
    graph: TaskGraph,
    options: RunOptions,
    *,
    runner: Runner | None,
    store: ResultStore | str | None,
    llm: LLM | str | None,
    run_id: str | None,
    functions: Any,
    executor: Executor | None,
    progress: bool | None,
    on_event: Callable[[Event], None] | None,
    signing_key: bytes | str | None,
    refresh: bool | Iterable[str] = False,
    only: Iterable[str] | None = None,
    carried: Carried | None = None,
    approve: Approve = None,
    replanner: Replanner | None = None,
    growing: bool = False,
    log: EventLogTarget = None,
) -> Run:
    """Assemble the parts of a run and start it."""
    from ..store import open_store

    if options.mode == "parallel" and graph.edges:
        dep, child = graph.edges[0]
        raise PlanError(
            f"mode 'parallel' runs independent tasks only, but task {child!r} depends on "
            f"{dep!r}; use mode='dag'",
            ids=[child, dep],
        )
    graph = graph.copy()  # edits to the caller's graph do not reach a running run
    actions = Actions(
        runner=runner,
        llm=llm,
        functions=functions,
        goal=graph.goal,
        input_budget=options.input_budget,
        local=LocalExecutor(options.workers),
        executor=executor,
        llm_batch=options.llm_batch,
    )
    actions.check(graph)  # unknown kinds, missing functions, no LLM configured: fail now
    if actions.llm_batch and not options.llm_batch:  # given a BatchLLM: recorded for resume
        options = dataclasses.replace(options, llm_batch=True)
    if options.on_failure == "replan" and replanner is None and not actions.has_llm():
        raise RunError(
            "on_failure='replan' needs an LLM to replan with: pass llm=... (or on_failure='skip')"
        )
    check_log_target(log)  # a log file that cannot be written: fail before anything starts
    gate = None
    if options.budget is not None:
        gate = BudgetGate(options.budget, actions=actions, gated=approve is not None)
        gate.check(graph)  # a dollar budget for a model without a price: fail now
    owns_store = store is None or isinstance(store, str)
    opened = open_store(store, signing_key=signing_key)
    actions.use_store(opened)
    if gate is not None:
        gate.store = opened  # where it reads what earlier runs spent per task
    live = RunState(run_id or new_run_id(), graph.tasks)
    if carried is not None:
        live.usage_before = (
            carried.spent if carried.spent is not None else spent_before(carried.tasks)
        )
    records = RunRecords(
        opened,
        live.run_id,
        owns_store=owns_store,
        lease_ttl=options.lease_ttl,
        lease_owner=carried.lease_owner if carried else None,
    )
    driver = Driver(
        graph,
        live,
        options=options,
        actions=actions,
        records=records,
        refresh=refresh,
        only=only,
        carried=carried,
        approve=approve,
        replanner=replanner or _default_replanner(actions),
        growing=growing,
        admission=gate,
    )
    handle = Run(graph, live, options=options, driver=driver, store_spec=store)
    if on_event is not None:
        handle.subscribe(on_event)
    handle.begin()
    if log is not None:
        attach_event_log(handle, log)  # the run's first step waits for the loop's next turn
    if wants_bar(progress):
        ProgressBar(handle)
    return handle


def _default_replanner(actions: Actions) -> Replanner | None:
    """Revisions made by the run's LLM, when it has one."""
    if not actions.has_llm():
        return None

    async def replanner(request: RevisionRequest) -> TaskGraph:
        from .._replan import replan

        summaries = {name: f.summary for name, f in actions.functions.items()}
        return await replan(request, llm=actions.llm, functions=summaries)

    return replanner
