"""Scale out: run Python tasks on a Dask cluster, with results in a shared store.

``DaskExecutor`` sends tasks of the chosen kinds (``python`` by default; LLM
calls are I/O-bound and stay in the notebook unless ``kinds`` says otherwise) to
a dask.distributed cluster through its asynchronous client, on the running loop.
The scheduler is unchanged: it decides what runs when, with the same priorities
and pool bounds; the cluster only provides the workers.

Results do not travel back to the notebook. When the run's store can be opened
by the workers (Redis, or SQLite on the same machine), the worker reads its
inputs from the store, computes, **commits the result to the store itself**,
and returns a ``StoredResult`` — a reference with the key and the size. The
notebook fetches a value only when it needs it (``await run.fetch(task_id)``, or
a local task taking it as input). Because finished results live in the store
and not in worker memory, losing a worker loses nothing finished: dask re-runs
the task that was running on it, on another worker, and nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .store import StoredResult

if TYPE_CHECKING:
    from ._actions import TaskContext
    from ._plan import Task


class DaskExecutor:
    """Run some task kinds on a Dask cluster.

    ``cluster`` is a ``distributed.Client`` (made with ``asynchronous=True`` on
    this loop, or a regular one whose address is reused), a scheduler address
    (``"tcp://host:8786"``), or ``"local"`` / ``"local:N"`` for a ``LocalCluster``
    of N worker processes started on demand and closed by ``close()``.
    ``ship_results=True`` sends values back to the notebook instead (needed
    with an in-memory store, which workers cannot reach; chosen automatically then).
    """

    def __init__(
        self,
        cluster: Any = "local",
        *,
        kinds: Iterable[str] = ("python",),
        ship_results: bool = False,
        signing_key: bytes | str | None = None,
    ) -> None:
        self.cluster = cluster
        self.kinds = frozenset(kinds)
        self.ship_results = ship_results
        self.signing_key = signing_key
        self.submitted = 0
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._local: Any = None
        self._connecting: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    def __repr__(self) -> str:
        where = self.cluster if isinstance(self.cluster, str) else type(self.cluster).__name__
        return f"DaskExecutor({where!r}, kinds={sorted(self.kinds)})"

    def handles(self, task: Task) -> bool:
        return task.kind in self.kinds

    async def client(self) -> Any:
        """The asynchronous client for the running loop (connecting on first use)."""
        loop = asyncio.get_running_loop()
        if self._client is not None and self._loop is loop:
            return self._client
        if self._connecting is None or self._connecting[0] is not loop:
            self._connecting = (loop, asyncio.Lock())
        async with self._connecting[1]:  # the first tasks arrive together: connect once
            if self._client is not None and self._loop is loop:
                return self._client
            return await self._connect(loop)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> Any:
        from distributed import Client

        target = self.cluster
        if isinstance(target, Client) and getattr(target, "asynchronous", False):
            self._client, self._loop = target, loop
            _flush_sooner(target)
            return target
        if isinstance(target, Client):
            target = target.scheduler.address
        elif isinstance(target, str) and target.split(":")[0] == "local":
            target = await self._start_local(target)
        elif hasattr(target, "scheduler_address"):  # a cluster object
            target = target.scheduler_address
        self._client = await Client(target, asynchronous=True)
        self._loop = loop
        _flush_sooner(self._client)
        return self._client

    async def _start_local(self, spec: str) -> str:
        if self._local is None:
            from distributed import LocalCluster

            workers = int(spec.split(":")[1]) if ":" in spec else 2
            self._local = await LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                asynchronous=True,
                dashboard_address=":0",  # any free port: never clash with another cluster
            )
        return self._local.scheduler_address

    async def submit(
        self,
        func: Any,
        kwargs: Mapping[str, Any],
        *,
        task: Task,
        ctx: TaskContext,
        store_url: str | None,
        signing_key: bytes | str | None = None,
    ) -> Any:
        """Run ``func(**kwargs)`` on the cluster: a ``StoredResult`` under ``ctx.key`` when
        the worker committed the value to the shared store, else the value."""
        client = await self.client()
        ship = self.ship_results or store_url is None
        meta = {"task_id": task.id, "run_id": ctx.run_id, "kind": task.kind, "worker": True}
        future = client.submit(
            run_on_worker,
            func,
            dict(kwargs),
            task_id=task.id,
            store_key=ctx.key,
            meta=meta,
            store_url=None if ship else store_url,
            signing_key=signing_key or self.signing_key,
            key=f"{task.id}-{ctx.attempt}-{uuid.uuid4().hex[:8]}",  # dask's name for it
            pure=False,
        )
        self.submitted += 1
        try:
            if ship:
                outcome = await future
            else:
                # the worker committed the result: wait for it to finish, fetch nothing
                # (an error still has to come back, and does through the future)
                await _finished(future)
                if future.status != "finished":
                    await future  # raises the task's error
                outcome = None
        except asyncio.CancelledError:
            # the run (or this task) was cancelled: take the work off the cluster too
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.shield(client.cancel(future))
            raise
        finally:
            future.release()
        if ship:
            return outcome
        return StoredResult(ctx.key or "", task.id, store_url or "")

    async def aclose(self) -> None:
        """Close the client, and the local cluster if this executor started one."""
        await self.close()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and client is not self.cluster:
            await client.close()
        local, self._local = self._local, None
        if local is not None:
            await local.close()


async def _finished(future: Any) -> None:
    """Wait until a dask future has finished or failed, without fetching its value.

    ``distributed.wait`` does this for a list, through a helper task per call; for
    one future, the future's own state event is one step closer.
    """
    state = getattr(future, "_state", None)
    if state is not None and hasattr(state, "wait"):
        await state.wait()
    else:  # a distributed version without it
        from distributed import wait

        await wait([future])


def _flush_sooner(client: Any) -> None:
    """Send submissions to the scheduler within 1 ms instead of 10.

    dask's client batches messages for 10 ms, which suits submitting a whole graph
    at once; we submit each task the moment its dependencies are done, so every
    step of a chain would wait out the batch interval.
    """
    comm = getattr(client, "scheduler_comm", None)
    if comm is not None and hasattr(comm, "interval"):
        comm.interval = min(comm.interval, 0.001)


def run_on_worker(
    func: Any,
    kwargs: dict[str, Any],
    *,
    task_id: str,
    store_key: str | None,
    meta: dict[str, Any],
    store_url: str | None,
    signing_key: bytes | str | None,
) -> Any:
    """On a worker: read stored inputs, call the function, commit its result.

    Returns the value itself when there is no shared store, else nothing.
    """
    refs = _references(kwargs)
    store = None
    if refs or store_url is not None:
        store = _worker_store(store_url or next(iter(refs.values())).url, signing_key)
    loop = _worker_loop()
    if refs:
        loaded = loop.run_until_complete(store.get_many([r.key for r in refs.values()]))
        kwargs = _replace(kwargs, {k: loaded[k] for k in loaded})
    if inspect.iscoroutinefunction(func):
        value = loop.run_until_complete(func(**kwargs))
    else:
        value = func(**kwargs)
    if store_url is None:
        return value
    assert store is not None
    assert store_key is not None
    return loop.run_until_complete(_commit(store, store_key, value, meta))


# A worker thread keeps one event loop and one store per URL, so the connection to the
# store is opened once per thread, not once per task.
_local = threading.local()


def _worker_loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


def _worker_store(url: str, signing_key: bytes | str | None) -> Any:
    from .store import open_store

    stores = getattr(_local, "stores", None)
    if stores is None:
        stores = _local.stores = {}
    if (url, signing_key) not in stores:
        stores[url, signing_key] = open_store(url, signing_key=signing_key)
    return stores[url, signing_key]


async def _commit(store: Any, key: str, value: Any, meta: dict[str, Any]) -> None:
    await store.put(key, value, meta=meta)


def _references(kwargs: Mapping[str, Any]) -> dict[str, StoredResult]:
    found: dict[str, StoredResult] = {}
    for value in kwargs.values():
        if isinstance(value, StoredResult):
            found[value.key] = value
        elif isinstance(value, dict):
            found.update({v.key: v for v in value.values() if isinstance(v, StoredResult)})
    return found


def _replace(kwargs: dict[str, Any], values: Mapping[str, Any]) -> dict[str, Any]:
    def swap(v: Any) -> Any:
        return values[v.key] if isinstance(v, StoredResult) else v

    return {
        k: ({dk: swap(dv) for dk, dv in v.items()} if isinstance(v, dict) else swap(v))
        for k, v in kwargs.items()
    }
