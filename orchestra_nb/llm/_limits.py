"""Rate limits for LLM calls: per-minute budgets plus a concurrency that adapts to 429s.

The per-minute request and token budgets use ``aiolimiter.AsyncLimiter`` (a
maintained leaky-bucket limiter). The adaptive concurrency is ours: a small
gate that halves the number of calls in flight when the server says 429 and
widens by one after a run of successes — AIMD, as TCP does — so a rate-limited
run slows down instead of hammering the server, and speeds up again on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


class RateLimit:
    """Limits shared by every call through one client (usually: one per model)."""

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        max_concurrency: int | None = None,
        min_concurrency: int = 1,
        widen_after: int = 5,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self.max_concurrency = max_concurrency
        self.min_concurrency = max(1, min_concurrency)
        self.widen_after = widen_after
        self._limit = max_concurrency  # current allowed concurrency; None = unbounded
        self._in_flight = 0
        self._successes = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._requests: Any = None
        self._tokens: Any = None

    def __repr__(self) -> str:
        return (
            f"RateLimit(rpm={self.requests_per_minute}, tpm={self.tokens_per_minute}, "
            f"concurrency={self.concurrency})"
        )

    def __getstate__(self) -> dict[str, Any]:
        """Picklable: the loop-bound parts are rebuilt on the loop that uses it next."""
        state = dict(self.__dict__)
        state.update(_loop=None, _waiters=[], _requests=None, _tokens=None, _in_flight=0)
        return state

    @property
    def concurrency(self) -> int | None:
        """Calls allowed in flight now (None: no concurrency bound)."""
        return self._limit

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            from aiolimiter import AsyncLimiter

            self._loop = loop
            self._in_flight = 0
            self._waiters = []
            self._requests = (
                AsyncLimiter(self.requests_per_minute, 60) if self.requests_per_minute else None
            )
            self._tokens = (
                AsyncLimiter(self.tokens_per_minute, 60) if self.tokens_per_minute else None
            )
        return loop

    async def acquire(self, tokens: int = 0) -> None:
        """Wait for a concurrency slot and the per-minute budgets."""
        loop = self._bind()
        while self._limit is not None and self._in_flight >= self._limit:
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        self._in_flight += 1
        try:
            if self._requests is not None:
                await self._requests.acquire()
            if self._tokens is not None and tokens:
                await self._tokens.acquire(min(tokens, self.tokens_per_minute or tokens))
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        self._in_flight = max(0, self._in_flight - 1)
        self._wake()

    def _wake(self) -> None:
        """Let waiters re-check the gate (a cancelled waiter simply drops out)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def on_rate_limited(self) -> None:
        """The server answered 429: halve the concurrency."""
        self._successes = 0
        current = self._limit if self._limit is not None else max(self._in_flight, 2)
        self._limit = max(self.min_concurrency, current // 2)

    def on_success(self) -> None:
        """A call succeeded: after enough in a row, allow one more in flight."""
        if self._limit is None:
            return
        self._successes += 1
        ceiling = self.max_concurrency
        if self._successes >= self.widen_after and (ceiling is None or self._limit < ceiling):
            self._successes = 0
            self._limit += 1
            self._wake()

    @contextlib.asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[None]:
        await self.acquire(tokens)
        try:
            yield
        finally:
            self.release()
