"""Redis specifics: TTLs on every key, no leaked password, outages and reconnects."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis as redis_sync

from orchestra_nb import StoreUnavailableError
from orchestra_nb.store import open_store


def _namespace(url: str) -> str:
    return url.split("namespace=", 1)[1]


async def test_every_key_written_has_a_ttl(redis_store_url):
    store = open_store(redis_store_url)
    await store.put_many({"a": "1", "b": {"x": 1}})
    await store.put("c", b"raw", meta={"m": 1})
    await store.save_run("r1", {"state": "running"})
    await store.save_run_tasks("r1", {"a": {"status": "done"}})
    await store.acquire_lease("run:r1", "me", 30)
    await store.close()
    client = redis_sync.Redis.from_url(redis_store_url.split("?")[0])
    names = list(client.scan_iter(match=f"{_namespace(redis_store_url)}:*"))
    assert len(names) == 7  # 3 results, header, tasks, index, lease
    for name in names:
        ttl = client.ttl(name)
        assert 0 < ttl <= 24 * 3600, (name, ttl)
    client.close()


async def test_custom_ttl(redis_store_url):
    store = open_store(redis_store_url + "&ttl=120")
    await store.put("k", "v")
    await store.close()
    client = redis_sync.Redis.from_url(redis_store_url.split("?")[0])
    assert 0 < client.ttl(f"{_namespace(redis_store_url)}:r:k") <= 120
    client.close()
    other = open_store(redis_store_url, ttl=60)
    assert other.ttl == 60


async def test_unreachable_redis_is_a_clear_error_without_the_password():
    from tests.support.redis_server import free_port

    store = open_store(f"redis://:s3cret@127.0.0.1:{free_port()}/0")
    assert "s3cret" not in store.url and "s3cret" not in repr(store)
    started = time.perf_counter()
    with pytest.raises(StoreUnavailableError) as info:
        await store.put("k", "v")
    assert time.perf_counter() - started < 10
    message = str(info.value)
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:")
    assert "s3cret" not in message and "\n" not in message
    assert info.value.__cause__ is None


async def test_wrong_password_is_reported_without_it(redis_server):
    protected = type(redis_server)(password="right-pw").start()
    try:
        store = open_store(f"redis://:wrong-pw@127.0.0.1:{protected.port}/0")
        with pytest.raises(StoreUnavailableError) as info:
            await store.ping()
        message = str(info.value)
        assert message == (
            f"Redis at redis://:***@127.0.0.1:{protected.port}/0 refused the credentials: "
            "invalid username-password pair or user is disabled."
        )
        assert "wrong-pw" not in message
        good = open_store(protected.url)
        await good.ping()
        await good.close()
    finally:
        protected.close()


async def test_server_restart_then_the_same_store_works_again(redis_server):
    store = open_store(redis_server.url)
    await store.put("k", "v")
    redis_server.stop()
    with pytest.raises(
        StoreUnavailableError,
        match=rf"^cannot reach Redis at redis://127\.0\.0\.1:{redis_server.port}/0",
    ):
        await store.put("k2", "v2")
    redis_server.start()
    await store.put("k2", "v2")  # reconnects
    assert await store.get("k2") == "v2"
    await store.close()


def test_usable_from_two_event_loops_in_sequence(redis_store_url):
    store = open_store(redis_store_url)
    asyncio.run(store.put("k", "v"))
    assert asyncio.run(store.get("k")) == "v"

    async def last():
        await store.close()

    asyncio.run(last())
