"""Namespaces on one Redis are walls: no namespace sees, lists or clears another's keys."""

from __future__ import annotations

import uuid

import redis as redis_sync

from orchestra_nb.store import open_store


async def test_clearing_a_namespace_spares_the_ones_that_extend_its_name(redis_url):
    base = f"proj{uuid.uuid4().hex[:6]}"
    names = [base, f"{base}:alice", f"{base}:r", f"{base}*", f"{base}%3Aalice", f"{base}:run"]
    stores = {
        name: open_store(f"{redis_url}?namespace={name.replace('%', '%25')}") for name in names
    }
    try:
        for name, store in stores.items():
            await store.put_many({"k1": f"{name} 1", "k2": f"{name} 2"})
            await store.save_run("r", {"state": "finished", "goal": name})
            await store.acquire_lease("run:r", name, 30)
        for name, store in stores.items():
            assert sorted(await store.keys()) == ["k1", "k2"], name  # its own, nobody else's
            assert await store.get("k1") == f"{name} 1"

        assert await stores[base].clear() == 3  # two results and one run
        assert await stores[base].keys() == []
        for name in names[1:]:
            store = stores[name]
            assert await store.get_many(["k1", "k2"]) == {"k1": f"{name} 1", "k2": f"{name} 2"}
            assert [r["goal"] for r in await store.list_runs()] == [name]
            assert await store.lease_owner("run:r") == name
    finally:
        client = redis_sync.Redis.from_url(redis_url)
        for key in client.scan_iter(match=f"{base}*"):
            client.delete(key)
        client.close()
        for store in stores.values():
            await store.close()
