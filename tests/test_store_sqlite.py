"""SQLite specifics: group commit, durability, several processes on one file, leases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap

import pytest

from orchestra_nb import StoreUnavailableError
from orchestra_nb.store import open_store
from tests.support import LoopTicks


async def test_group_commit_batches_concurrent_puts(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/r.db?direct=0")
    await asyncio.gather(*(store.put(f"k{i}", f"v{i}") for i in range(200)))
    assert store.stats["rows"] == 200
    assert store.stats["commits"] < 20
    assert len(await store.keys()) == 200
    await store.close()


async def test_small_writes_commit_directly_big_ones_through_the_thread(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    store = open_store(url)
    await store.ping()  # schema
    await store.put("small", "x")
    assert store._direct_commits == 1
    await store.put("big", "y" * 100_000)
    assert store._direct_commits == 1
    assert store.stats["commits"] == 2
    await store.close()
    again = open_store(url)
    assert await again.get_many(["small", "big"]) == {"small": "x", "big": "y" * 100_000}
    await again.close()


async def test_a_locked_database_never_blocks_the_loop(tmp_path):
    import sqlite3
    import threading

    url = f"sqlite:///{tmp_path}/r.db"
    store = open_store(url)
    await store.ping()
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock():
        conn = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")  # another process writing, as far as we know
        locked.set()
        release.wait(5)
        conn.execute("COMMIT")
        conn.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    await asyncio.to_thread(locked.wait, 5)
    async with LoopTicks() as ticks:
        put = asyncio.ensure_future(store.put("k", "v"))
        await asyncio.sleep(0.3)
        assert not put.done()  # waiting for the lock, on the store's thread
        assert ticks.count >= 10  # while the loop kept turning
        release.set()
        await asyncio.wait_for(put, 10)
    holder.join()
    assert await store.get("k") == "v"
    await store.close()


async def test_results_survive_a_new_store_object(tmp_path):
    url = f"sqlite:///{tmp_path}/sub/dir/r.db"
    first = open_store(url)
    await first.put("k", {"deep": [1, 2]})
    await first.close()
    second = open_store(url)
    assert await second.get("k") == {"deep": [1, 2]}
    await second.close()


WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from orchestra_nb.store import open_store

    async def main(url, prefix):
        store = open_store(url)
        for i in range(100):
            await store.put_many({f"{prefix}{i}": i, f"{prefix}{i}b": str(i)})
        ok = await store.acquire_lease("shared", prefix, 30)
        print("lease" if ok else "no-lease")
        await store.close()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_two_processes_write_one_file(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WRITER,
            url,
            p,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for p in ("x", "y")
    ]
    outputs = []
    for proc in procs:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        assert proc.returncode == 0, err.decode()
        outputs.append(out.decode().strip())
    assert sorted(outputs) == ["lease", "no-lease"]  # exactly one process got the lease
    store = open_store(url)
    keys = await store.keys()
    assert len(keys) == 400
    assert await store.get("x99") == 99
    await store.close()


async def test_unwritable_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = open_store(f"sqlite:///{blocker}/r.db")
    with pytest.raises(StoreUnavailableError, match=r"cannot open the SQLite store .*file/r\.db"):
        await store.put("k", "v")


def test_relative_and_absolute_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:///data/r.db")
    assert rel.path.as_posix() == "data/r.db"
    absolute = open_store(f"sqlite:///{tmp_path}/r.db")
    assert absolute.path == tmp_path / "r.db"
    default = open_store()
    assert default.path.as_posix() == ".orchestra/results.db"
    monkeypatch.setenv("ORCHESTRA_STORE", "memory://")
    assert type(open_store()).__name__ == "MemoryStore"
