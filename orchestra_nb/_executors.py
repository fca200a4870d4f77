"""Where a task's code runs: the ``Executor`` protocol and the local executor.

An executor takes a function and its keyword arguments for one task and gives
back the function's value — or, when it ran somewhere else and committed the
value to the run's shared store itself, a ``StoredResult`` under the task's
cache key. ``LocalExecutor`` runs in this process: coroutine functions on the
running loop, sync functions in worker threads so they never block it.
``DaskExecutor`` (in ``_dask``) runs chosen task kinds on a Dask cluster.
The engine knows neither; ``Actions`` picks one per task.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from concurrent.futures import Executor as _PoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ._actions import TaskContext
    from ._plan import Task


@runtime_checkable
class Executor(Protocol):
    """Runs a task's function somewhere and gives back its value or a stored reference."""

    def handles(self, task: Task) -> bool:
        """Whether this executor runs tasks like ``task``."""
        ...

    async def submit(
        self,
        func: Callable[..., Any],
        kwargs: Mapping[str, Any],
        *,
        task: Task,
        ctx: TaskContext,
        store_url: str | None,
        signing_key: bytes | str | None = None,
    ) -> Any:
        """``func(**kwargs)``'s value, or a ``StoredResult`` under ``ctx.key``."""
        ...

    async def aclose(self) -> None:
        """Release what the executor holds (connections, clusters it started)."""
        ...


class LocalExecutor:
    """Runs functions in this process without ever blocking the loop.

    A sync call that overstays its timeout cannot be stopped; its thread is
    abandoned to a retired pool so it never holds a slot new work needs.
    """

    def __init__(self, max_threads: int = 1):
        from concurrent.futures import ThreadPoolExecutor

        self._factory = functools.partial(
            ThreadPoolExecutor, max_workers=max(1, max_threads), thread_name_prefix="orchestra"
        )
        self._pool: _PoolExecutor | None = None

    def handles(self, task: Task) -> bool:
        return True

    async def submit(
        self,
        func: Callable[..., Any],
        kwargs: Mapping[str, Any],
        *,
        task: Task | None = None,
        ctx: TaskContext | None = None,
        store_url: str | None = None,
        signing_key: bytes | str | None = None,
    ) -> Any:
        return await self.call(func, **kwargs)

    async def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Await coroutine functions; run sync ones in a thread; await awaitable results."""
        if is_async(func):
            result = await func(*args, **kwargs)
        else:
            result = await self._in_thread(func, *args, **kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _in_thread(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._pool is None:
            self._pool = self._factory()
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        future = loop.run_in_executor(self._pool, functools.partial(ctx.run, func, *args, **kwargs))
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done():
                self.retire()
            raise

    def retire(self) -> None:
        """Hand the current pool (with a stuck thread) off; new calls get a fresh one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=False)
            self._pool = None

    async def aclose(self) -> None:
        self.shutdown()

    def shutdown(self) -> None:
        """Stop the threads without waiting for calls still running (they are abandoned)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def is_async(func: Callable[..., Any]) -> bool:
    """A coroutine function, or an object whose ``__call__`` is one."""
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - objects with an async __call__
    )
