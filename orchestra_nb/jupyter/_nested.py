"""The one place that blocks on the event loop: ``wait(awaitable)``.

A notebook cell runs *inside* the kernel's running asyncio loop, so it cannot
``await`` from a magic and must never call ``asyncio.run``. Runs are tasks on
that loop and cells return at once; only ``%%orchestrate --wait`` (and a few
short checks, such as pinging a store before starting) need to block the cell
until something finishes. That re-enters the running loop, which asyncio does
not allow by itself; ``nest_asyncio2`` patches the loop to make it reentrant.

Why nest-asyncio2: it is the maintained fork of nest-asyncio (archived in 2024,
and broken on Python 3.12+ where asyncio's internals changed), and it is what
ipykernel itself depends on, so the patch it applies is the one the kernel
already expects. It is applied lazily, to the running loop only, the first
time a blocking wait is needed.

This module imports only the standard library, nest_asyncio2 and (when present)
IPython, so it can be tested on its own under every supported Python version.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait(
    awaitable: Awaitable[T],
    *,
    timeout: float | None = None,
    on_interrupt: Callable[[], Any] | None = None,
) -> T:
    """Block until ``awaitable`` finishes and return its result (or raise its error).

    Works from inside a running loop (a notebook cell in a kernel) and with no
    loop running (IPython in a terminal, a script: the work runs on IPython's
    own persistent loop, or one kept here, so tasks it starts live on between
    calls). ``timeout`` raises ``TimeoutError``. On KeyboardInterrupt (the user
    interrupts the kernel) ``on_interrupt`` is called — e.g. to cancel a run —,
    the loop gets a moment to wind the work down cleanly, and the interrupt is
    re-raised.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = home_loop()
    else:
        import nest_asyncio2

        nest_asyncio2.apply(loop)
    future = asyncio.ensure_future(_bounded(awaitable, timeout), loop=loop)
    try:
        return loop.run_until_complete(future)
    except KeyboardInterrupt:
        if on_interrupt is not None:
            on_interrupt()
        future.cancel()
        with contextlib.suppress(KeyboardInterrupt):  # a second interrupt: stop waiting
            loop.run_until_complete(asyncio.wait([future], timeout=5))
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: the interrupt is what the user sees
        raise


def call_on_loop(func: Callable[[], T]) -> T:
    """Call ``func`` where a loop is running, so the tasks it starts have one to run on."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:

        async def inside() -> T:
            return func()

        return wait(inside())
    return func()


_HOME: asyncio.AbstractEventLoop | None = None


def home_loop() -> asyncio.AbstractEventLoop:
    """The loop to use when none is running: IPython's own (what its autoawait runs
    ``await`` cells on), else one kept by this module."""
    global _HOME
    try:
        from IPython.core.async_helpers import get_asyncio_loop
    except ImportError:
        if _HOME is None or _HOME.is_closed():
            _HOME = asyncio.new_event_loop()
        return _HOME
    return get_asyncio_loop()


async def _bounded(awaitable: Awaitable[T], seconds: float | None) -> T:
    if seconds is None:
        return await awaitable
    return await asyncio.wait_for(awaitable, seconds)
