"""One contract, three stores: memory, SQLite and a real Redis behave the same."""

from __future__ import annotations

import asyncio
import os
import pickle

import pytest

from orchestra_nb import Image, Markdown, StoreError, UnsafeDataError
from orchestra_nb.store import open_store


@pytest.fixture(params=["memory", "sqlite", "redis"])
def store_url(request, tmp_path):
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results.db"
    return request.getfixturevalue("redis_store_url")


@pytest.fixture
async def store(store_url):
    s = open_store(store_url)
    yield s
    await s.close()


async def test_put_get_has_delete(store):
    assert not await store.has("k1")
    with pytest.raises(KeyError):
        await store.get("k1")
    await store.put("k1", "hello", meta={"task_id": "a"})
    assert await store.get("k1") == "hello"
    assert await store.has("k1")
    assert await store.delete("k1") is True
    assert await store.delete("k1") is False
    assert not await store.has("k1")


async def test_batches(store):
    await store.put_many({"a": "1", "b": [1, 2], "c": {"x": None}})
    assert await store.get_many(["a", "b", "zz", "c"]) == {"a": "1", "b": [1, 2], "c": {"x": None}}
    assert await store.has_many(["a", "zz", "c"]) == {"a", "c"}
    assert sorted(await store.keys()) == ["a", "b", "c"]
    assert await store.get_many([]) == {}


@pytest.mark.parametrize(
    "value",
    [
        "plain text ✓ with unicode",
        "",
        b"\x00\x01binary",
        {"nested": [1, 2.5, True, None, {"deep": "x"}]},
        [1, "two", 3.0],
        42,
        3.25,
        None,
        False,
    ],
)
async def test_values_round_trip(store, value):
    await store.put("v", value)
    got = await store.get("v")
    assert got == value
    assert type(got) is type(value)


async def test_markdown_and_images_keep_their_type(store):
    await store.put_many(
        {"md": Markdown("# Title\n\ntext"), "img": Image(b"<svg/>", "image/svg+xml")}
    )
    md = await store.get("md")
    assert isinstance(md, Markdown) and md == "# Title\n\ntext"
    img = await store.get("img")
    assert img == Image(b"<svg/>", "image/svg+xml")


async def test_dataframe_round_trip(store):
    import pandas as pd

    frame = pd.DataFrame(
        {"year": [2024, 2025], "size": [1.5, 2.25], "region": ["EU", "US"]},
        index=pd.Index(["a", "b"], name="row"),
    )
    await store.put("df", frame)
    got = await store.get("df")
    pd.testing.assert_frame_equal(got, frame)


async def test_matplotlib_figure_becomes_png_image(store):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3])
    await store.put("fig", fig)
    got = await store.get("fig")
    assert isinstance(got, Image)
    assert got.mime == "image/png"
    assert got.data.startswith(b"\x89PNG")


async def test_entry_meta(store):
    await store.put("k", "v", meta={"task_id": "t1", "tokens": 12})
    entry = await store.get_entry("k")
    assert entry.value == "v"
    assert entry.codec == "text"
    assert entry.mime == "text/plain"
    assert entry.meta == {"task_id": "t1", "tokens": 12}
    assert entry.size == 1
    assert entry.created > 0
    assert await store.get_entry("missing") is None


async def test_unencodable_value_is_refused_and_nothing_written(store):
    class Thing:
        pass

    with pytest.raises(StoreError, match=r"cannot store a result of type .*Thing.*signing_key"):
        await store.put_many({"ok": "fine", "bad": Thing()})
    assert not await store.has("bad")


async def test_signed_pickle_round_trip(store_url):
    s = open_store(store_url, signing_key=b"k" * 32)
    try:
        value = {1, 2, 3}  # a set: not JSON
        await s.put("p", value)
        assert await s.get("p") == value
        assert (await s.get_entry("p")).codec == "pickle"
    finally:
        await s.close()


async def test_run_records(store):
    await store.save_run("r1", {"state": "running", "graph": {"subtasks": []}, "keys": {}})
    await store.save_run_tasks("r1", {"a": {"status": "done"}, "b": {"status": "failed"}})
    await store.save_run_tasks("r1", {"b": {"status": "done", "attempts": 2}})
    await asyncio.sleep(0.01)
    await store.save_run("r2", {"state": "finished"})
    record = await store.load_run("r1")
    assert record.run_id == "r1"
    assert record.header["state"] == "running"
    assert record.tasks == {"a": {"status": "done"}, "b": {"status": "done", "attempts": 2}}
    runs = await store.list_runs()
    assert [r["run_id"] for r in runs] == ["r2", "r1"]
    assert "graph" not in runs[1] and runs[1]["state"] == "running"
    assert await store.load_run("nope") is None
    assert await store.delete_run("r1") is True
    assert await store.load_run("r1") is None
    assert [r["run_id"] for r in await store.list_runs()] == ["r2"]


async def test_leases(store):
    assert await store.acquire_lease("run:x", "alice", 30)
    assert not await store.acquire_lease("run:x", "bob", 30)
    assert await store.acquire_lease("run:x", "alice", 30)  # re-entrant for the owner
    assert await store.lease_owner("run:x") == "alice"
    assert await store.renew_lease("run:x", "alice", 30)
    assert not await store.renew_lease("run:x", "bob", 30)
    await store.release_lease("run:x", "bob")  # not the owner: no effect
    assert await store.lease_owner("run:x") == "alice"
    await store.release_lease("run:x", "alice")
    assert await store.lease_owner("run:x") is None
    assert await store.acquire_lease("run:x", "bob", 0.2)
    await asyncio.sleep(0.35)
    assert await store.lease_owner("run:x") is None
    assert await store.acquire_lease("run:x", "carol", 30)


async def test_clear_leaves_other_namespaces_alone(store_url):
    sep = "&" if "?" in store_url else "?"
    if store_url == "memory://":
        mine, other = open_store("memory://shared"), open_store("memory://shared?namespace=b")
    else:
        mine = open_store(store_url)
        other = open_store(f"{store_url}{sep}namespace=other-{os.getpid()}")
    try:
        await mine.put_many({"a": "1", "b": "2"})
        await mine.save_run("r", {"state": "x"})
        await other.put("a", "keep")
        assert await mine.clear() == 3
        assert await mine.keys() == []
        assert await mine.list_runs() == []
        assert await other.get("a") == "keep"
    finally:
        await other.clear()
        await mine.close()
        await other.close()


class Planted:
    """Unpickling this creates a marker file: proof that pickle.loads ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


async def plant(store_url: str, key: str, payload: bytes) -> None:
    """Write a raw pickle entry the way an attacker with store access would."""
    if store_url.startswith("sqlite"):
        import sqlite3

        s = open_store(store_url)
        await s.ping()  # creates the schema
        await s.close()
        conn = sqlite3.connect(store_url.split(":///", 1)[1])
        conn.execute(
            "INSERT INTO results VALUES ('orchestra', ?, 'pickle', 'x', ?, 0, '{}')",
            (key, payload),
        )
        conn.commit()
        conn.close()
    else:
        import redis

        base, _, query = store_url.partition("?")
        namespace = dict(p.split("=") for p in query.split("&")).get("namespace", "orchestra")
        client = redis.Redis.from_url(base)
        fields = {"codec": "pickle", "mime": "x", "data": payload, "created": 0, "meta": "{}"}
        client.hset(f"{namespace}:r:{key}", mapping=fields)
        client.expire(f"{namespace}:r:{key}", 60)
        client.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_planted_pickle_is_refused_and_never_runs(backend, tmp_path, request):
    url = (
        f"sqlite:///{tmp_path}/r.db"
        if backend == "sqlite"
        else request.getfixturevalue("redis_store_url")
    )
    marker = tmp_path / "pwned"
    raw = pickle.dumps(Planted(str(marker)))
    await plant(url, "evil", raw)
    await plant(url, "forged", b"\x00" * 32 + raw)  # a made-up signature

    s = open_store(url)  # without a key: pickle is refused outright
    try:
        for key in ("evil", "forged"):
            with pytest.raises(UnsafeDataError, match=key):
                await s.get(key)
            with pytest.raises(UnsafeDataError):
                await s.get_many([key])
    finally:
        await s.close()
    s = open_store(url, signing_key=b"another key")  # with one: an unsigned entry is a miss
    try:
        assert await s.get_many(["evil", "forged"]) == {}
        assert await s.has_many(["evil", "forged"]) == set()
        with pytest.raises(KeyError):
            await s.get("evil")
    finally:
        await s.close()
    assert not marker.exists()
