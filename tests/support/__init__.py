"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio


class LoopTicks:
    """Count how often the running event loop turns while the block runs.

    ``async with LoopTicks() as t: ...`` then ``t.count``: a loop blocked by
    synchronous work inside the block shows as few ticks.
    """

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.count += 1

    async def __aenter__(self) -> LoopTicks:
        self._task = asyncio.ensure_future(self._tick())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
