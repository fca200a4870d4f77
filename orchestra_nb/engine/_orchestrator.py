"""``Orchestrator``: one store, one LLM and shared defaults for repeated runs.

A notebook or an application that runs many graphs against the same store
keeps one ``Orchestrator``: it opens the store once, remembers the runs it
started, and forwards everything else to the module-level functions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from .._actions import graph_cache_keys
from ._api import Runner, _begin, history, resume, rollback
from ._options import RunOptions

if TYPE_CHECKING:
    from .._events import Event
    from .._executors import Executor
    from .._plan import TaskGraph
    from ..llm import LLM
    from ..store import ResultStore
    from ._run import Run


class Orchestrator:
    """Defaults (store, LLM, limits, functions) shared by repeated runs.

    ``orch.start(graph)`` / ``await orch.run(graph)`` / ``await orch.resume(id)``
    use them; the limits given to a call replace the defaults for that call.
    ``async with Orchestrator(...) as orch:`` closes the store at the end.
    """

    def __init__(
        self,
        *,
        store: ResultStore | str | None = None,
        llm: LLM | str | None = None,
        functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
        executor: Executor | None = None,
        signing_key: bytes | str | None = None,
        progress: bool | None = None,
        on_event: Callable[[Event], None] | None = None,
        options: RunOptions | None = None,
        max_workers: int | None = None,
        mode: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> None:
        from ..store import open_store

        self.store = open_store(store, signing_key=signing_key)
        self.llm = llm
        self.functions = functions
        self.executor = executor
        self.progress = progress
        self.on_event = on_event
        given = {"max_workers": max_workers, "mode": mode, "retries": retries, "timeout": timeout}
        self.options = replace(options or RunOptions(), **_given(given))
        self.runs: dict[str, Run] = {}

    def start(
        self,
        graph: TaskGraph | Any,
        runner: Runner | None = None,
        *,
        run_id: str | None = None,
        refresh: bool | Iterable[str] = False,
        only: Iterable[str] | None = None,
        max_workers: int | None = None,
        mode: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Start a run with this orchestrator's defaults (see ``orchestra_nb.start``)."""
        from .._plan import TaskGraph

        given = {"max_workers": max_workers, "mode": mode, "retries": retries, "timeout": timeout}
        started = _begin(
            graph if isinstance(graph, TaskGraph) else TaskGraph.from_plan(graph),
            replace(self.options, **_given(given)),
            runner=runner,
            store=self.store,
            llm=self.llm,
            run_id=run_id,
            refresh=refresh,
            only=only,
            functions=self.functions,
            executor=self.executor,
            progress=self.progress,
            on_event=self.on_event,
            signing_key=None,  # the store was opened with it
        )
        self.runs[started.id] = started
        return started

    async def run(
        self,
        graph: TaskGraph | Any,
        runner: Runner | None = None,
        *,
        run_id: str | None = None,
        refresh: bool | Iterable[str] = False,
        only: Iterable[str] | None = None,
        max_workers: int | None = None,
        mode: str | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Run to the end with this orchestrator's defaults (see ``orchestra_nb.run``)."""
        return await self.start(
            graph,
            runner,
            run_id=run_id,
            refresh=refresh,
            only=only,
            max_workers=max_workers,
            mode=mode,
            retries=retries,
            timeout=timeout,
        )

    async def resume(
        self,
        run_or_id: Run | str,
        runner: Runner | None = None,
        *,
        max_workers: int | None = None,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Run:
        """Finish an interrupted run in this store (see ``orchestra_nb.resume``)."""
        resumed = await resume(
            run_or_id,
            runner,
            store=self.store,
            llm=self.llm,
            functions=self.functions,
            executor=self.executor,
            max_workers=max_workers,
            retries=retries,
            timeout=timeout,
            progress=self.progress,
            on_event=self.on_event,
        )
        self.runs[resumed.id] = resumed
        return resumed

    async def history(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Earlier runs in this store, newest first."""
        return await history(self.store, limit=limit)

    async def rollback(self, run_id: str) -> Run:
        """An earlier run as it ended (see ``orchestra_nb.rollback``)."""
        return await rollback(run_id, store=self.store)

    async def clear_cache(self) -> int:
        """Delete every stored result and run record in this store's namespace."""
        return await self.store.clear()

    async def invalidate(
        self, graph: TaskGraph, task_ids: Iterable[str], *, runner: Runner | None = None
    ) -> int:
        """Forget the cached results of some tasks and their descendants; how many went."""
        keys = graph_cache_keys(graph, runner=runner, llm=self.llm, functions=self.functions)
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


def _given(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
