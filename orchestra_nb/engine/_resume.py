"""``resume``: finish a run that stopped — after a kernel restart, a crash or a store outage.

The graph, options, approvals waiting, revisions and batches come from the run's
record (or from a ``Run`` object still in memory); tasks with committed results
are not run again. The continued run keeps the same id.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._budget import Budget
from .._errors import RunError
from .._event_log import EventLogTarget
from .._plan import TaskGraph
from ._api import Runner, _begin
from ._options import RunOptions
from ._records import load_record
from ._revisions import revisions_from_header
from ._run import Run
from ._selection import Carried

if TYPE_CHECKING:
    from .._events import Event
    from .._executors import Executor
    from ..llm import LLM
    from ..store import ResultStore


async def resume(
    run_or_id: Run | str,
    runner: Runner | None = None,
    *,
    store: ResultStore | str | None = None,
    llm: LLM | str | None = None,
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
    executor: Executor | None = None,
    max_workers: int | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    run_timeout: float | None = None,
    progress: bool | None = None,
    on_event: Callable[[Event], None] | None = None,
    signing_key: bytes | str | None = None,
    on_failure: str | None = None,
    llm_batch: bool | None = None,
    budget: Budget | None = None,
    log: EventLogTarget = None,
) -> Run:
    """Finish an interrupted run: tasks with committed results are not run again.

    Takes a run id (after a kernel restart: the graph and options come from the
    store's run record) or a ``Run`` (for instance one stopped by an unreachable
    store: results it holds that the store lacks are written first). Options
    given here replace the recorded ones; the rest are as the run had them. Tasks
    left awaiting approval wait again (decisions recorded meanwhile apply), and the
    plan's revisions carry on. Tasks left waiting in a provider batch (``batched``)
    wait for that batch again instead of sending their requests anew
    (``llm_batch=False`` sends plain requests from now on). A ``budget`` given here
    replaces the recorded one; it counts what the earlier parts of the run spent.
    """
    continued = await start_resume(
        run_or_id,
        runner,
        store=store,
        llm=llm,
        functions=functions,
        executor=executor,
        max_workers=max_workers,
        retries=retries,
        timeout=timeout,
        run_timeout=run_timeout,
        progress=progress,
        on_event=on_event,
        signing_key=signing_key,
        on_failure=on_failure,
        llm_batch=llm_batch,
        budget=budget,
        log=log,
    )
    return await continued


async def start_resume(
    run_or_id: Run | str,
    runner: Runner | None = None,
    *,
    store: ResultStore | str | None = None,
    llm: LLM | str | None = None,
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
    executor: Executor | None = None,
    max_workers: int | None = None,
    retries: int | None = None,
    timeout: float | None = None,
    run_timeout: float | None = None,
    progress: bool | None = None,
    on_event: Callable[[Event], None] | None = None,
    signing_key: bytes | str | None = None,
    on_failure: str | None = None,
    llm_batch: bool | None = None,
    budget: Budget | None = None,
    log: EventLogTarget = None,
) -> Run:
    """Like ``resume``, but returns the continued run as soon as it has started."""
    from ..store import open_store

    overrides = {
        "max_workers": max_workers,
        "retries": retries,
        "timeout": timeout,
        "run_timeout": run_timeout,
        "on_failure": on_failure,
        "llm_batch": llm_batch,
        "budget": budget,
    }
    if isinstance(run_or_id, Run):
        previous = run_or_id
        if not previous.done:
            raise RunError(f"run {previous.id!r} is still running")
        actions = previous.actions
        carried = Carried(
            tasks={tid: {"status": s} for tid, s in previous.status.items()},
            results={
                tid: (previous.keys[tid], value)
                for tid, value in previous.results.items()
                if tid in previous.keys
            },
            lease_owner=previous.lease_owner,
            created=previous.started_at,
            revisions=tuple(previous.revisions),
            spent=previous.spent,
        )
        return _begin(
            previous.graph,
            RunOptions.from_record(previous.options.to_record(), **overrides),
            runner=runner if runner is not None else (actions.runner if actions else None),
            store=store if store is not None else previous.store_spec,
            llm=llm if llm is not None else (actions.llm_spec if actions else None),
            functions=functions if functions is not None else (actions and actions.functions),
            executor=executor,
            run_id=previous.id,
            carried=carried,
            approve=previous.gates,
            replanner=previous.replanner,
            progress=progress,
            on_event=on_event,
            signing_key=signing_key,
            log=log,
        )
    opened = open_store(store, signing_key=signing_key)
    try:
        record = await load_record(opened, run_or_id)
    finally:
        if opened is not store:
            await opened.close()
    header = record.header
    graph = await asyncio.to_thread(TaskGraph.from_plan, header["graph"])  # untrusted, big
    return _begin(
        graph,
        RunOptions.from_record(header.get("options") or {}, **overrides),
        runner=runner,
        store=store,
        llm=llm,
        functions=functions,
        executor=executor,
        run_id=run_or_id,
        carried=Carried(
            tasks=record.tasks,
            created=header.get("created"),
            revisions=tuple(revisions_from_header(header.get("revisions"))),
        ),
        approve=header.get("approve"),
        progress=progress,
        on_event=on_event,
        signing_key=signing_key,
        log=log,
    )
