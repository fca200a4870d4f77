"""Executing one attempt of a task: identical tasks once, timeouts, and abandonment.

``Attempts`` belongs to one run's driver. It runs a task's action on its inputs
and owns two things the driver should not have to think about:

* **in-flight deduplication** — two tasks with the same cache key running at
  the same time execute once; the second waits for the first's value (or error);
* **abandonment** — a task that times out, or is cancelled while its code ignores
  the cancellation, gives its slot back at once: its asyncio task is cancelled,
  no longer waited for, and kept here (a strong reference) until it really ends.
  ``settle`` gives the stragglers a grace period at the end of the run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .._errors import RunError, TaskTimeoutError

if TYPE_CHECKING:
    from .._actions import Actions, TaskContext
    from .._plan import Task

log = logging.getLogger("orchestra_nb")


class Attempts:
    """Runs task attempts for one run (see the module docstring)."""

    def __init__(self, actions: Actions) -> None:
        self.actions = actions
        self._inflight: dict[str, list[asyncio.Future[Any]] | None] = {}
        self._abandoned: set[asyncio.Future[Any]] = set()

    async def execute(
        self, key: str, task: Task, inputs: dict[str, Any], ctx: TaskContext, limit: float | None
    ) -> Any:
        """The task's value (within ``limit`` seconds when given), or that of an identical
        task already in flight."""
        inflight = self._inflight
        if key in inflight:  # an identical task is running: wait for its result
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            waiters = inflight[key]
            if waiters is None:
                inflight[key] = waiters = []
            waiters.append(future)
            return await future
        inflight[key] = None  # a list of waiters only when a second one comes
        try:
            if limit is None:
                value = await self.actions.execute(task, inputs, ctx)
            else:
                value = await self._within(limit, task, inputs, ctx)
        except BaseException as exc:
            waiters = inflight.pop(key)
            if waiters:
                if isinstance(exc, asyncio.CancelledError):
                    exc = RunError(f"the identical task {task.id!r} was cancelled")
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
            raise
        waiters = inflight.pop(key)
        if waiters:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(value)
        return value

    async def _within(
        self, seconds: float, task: Task, inputs: dict[str, Any], ctx: TaskContext
    ) -> Any:
        inner = asyncio.ensure_future(self.actions.execute(task, inputs, ctx))
        try:
            done, _pending = await asyncio.wait({inner}, timeout=seconds)
        except asyncio.CancelledError:
            self.abandon(inner)
            raise
        if inner in done:
            return inner.result()
        self.abandon(inner)
        raise TaskTimeoutError(f"timed out after {seconds:g} s")

    def abandon(self, inner: asyncio.Future[Any]) -> None:
        """Cancel a task's code and stop waiting for it; its slot is already free."""
        inner.cancel()
        if not inner.done():
            self._abandoned.add(inner)
            inner.add_done_callback(self._forget)

    def _forget(self, inner: asyncio.Future[Any]) -> None:
        self._abandoned.discard(inner)
        if not inner.cancelled():
            inner.exception()  # retrieve it so asyncio does not warn

    async def settle(self, grace: float, run_id: str) -> None:
        """Give abandoned tasks ``grace`` seconds to end; warn about those that do not."""
        if not self._abandoned:
            return
        _done, still = await asyncio.wait(set(self._abandoned), timeout=grace)
        if still:
            log.warning(
                "%d task(s) of run %s ignored cancellation and are left running",
                len(still),
                run_id,
            )
