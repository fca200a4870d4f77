"""RateLimit: adaptive concurrency against real 429s, and per-minute budgets."""

from __future__ import annotations

import asyncio
import time

from orchestra_nb import OpenAILLM, RateLimit
from tests.support.llm_server import LLMServer, Reply


async def test_concurrency_narrows_on_429_and_widens_after_successes():
    limit = RateLimit(max_concurrency=8, widen_after=2)
    assert limit.concurrency == 8
    limit.on_rate_limited()
    assert limit.concurrency == 4
    limit.on_rate_limited()
    limit.on_rate_limited()
    limit.on_rate_limited()
    assert limit.concurrency == 1  # never below min_concurrency
    for _ in range(4):
        limit.on_success()
    assert limit.concurrency == 3
    for _ in range(40):
        limit.on_success()
    assert limit.concurrency == 8  # never above max_concurrency


async def test_the_gate_holds_callers_and_lets_cancelled_waiters_go():
    limit = RateLimit(max_concurrency=2)
    active = peak = 0

    async def call():
        nonlocal active, peak
        async with limit.slot():
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.02)
            active -= 1

    await asyncio.gather(*(call() for _ in range(10)))
    assert peak == 2
    await limit.acquire()
    await limit.acquire()
    waiter = asyncio.ensure_future(limit.acquire())
    await asyncio.sleep(0.01)
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    limit.release()
    limit.release()
    await asyncio.wait_for(limit.acquire(), 1)  # the cancelled waiter leaked no slot
    limit.release()


async def test_requests_per_minute_spaces_calls():
    limit = RateLimit(requests_per_minute=600)  # 10 a second, bursting up to 600
    started = time.perf_counter()
    for _ in range(5):
        async with limit.slot():
            pass
    assert time.perf_counter() - started < 1  # the burst is allowed
    slow = RateLimit(requests_per_minute=120)  # 2 a second once the bucket is full
    for _ in range(120):
        await slow.acquire()
        slow.release()
    started = time.perf_counter()
    await slow.acquire()
    slow.release()
    assert time.perf_counter() - started >= 0.3


async def test_server_sees_no_more_than_the_limit_and_429s_narrow_it():
    with LLMServer(latency=0.05) as server:
        server.script(*[Reply(status=429, headers={"Retry-After": "0.1"}) for _ in range(3)])
        limit = RateLimit(max_concurrency=4)
        llm = OpenAILLM("m", base_url=server.url, api_key="k", rate_limit=limit, backoff=0.01)
        results = await asyncio.gather(*(llm.complete(f"q{i}") for i in range(12)))
        assert [r.text for r in results] == [f"Answer: q{i}" for i in range(12)]
        assert server.concurrency_peak <= 4
        assert llm.rate_limited == 3
        assert limit.concurrency < 4
