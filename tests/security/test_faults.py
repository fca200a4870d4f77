"""Stores failing under a run: a disk that fills up, a Redis killed and restarted, two
processes racing for a dead owner's run. Every check reads the tasks' own log of what
they executed, not the engine's account of it."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import time

import pytest

import orchestra_nb as onb
from orchestra_nb import LeaseError, StoreFullError, StoreUnavailableError, Task, TaskGraph
from orchestra_nb.store import open_store
from tests.support.redis_server import RedisServer

# --- a disk that fills up ---------------------------------------------------------------


def fan(n: int) -> TaskGraph:
    """A root, n - 2 tasks that need it, and a last one that needs them all."""
    middle = [Task(f"t{i}", dependencies=("t0",)) for i in range(1, n - 1)]
    last = Task(f"t{n - 1}", dependencies=tuple(t.id for t in middle))
    return TaskGraph([Task("t0"), *middle, last])


def logging_runner(log, *, size: int = 8000, pause: float = 0.01, hook=None):
    """A task that records each execution in ``log`` (one line per run of a task)."""

    async def runner(task, inputs):
        _append(log, task.id)  # a few bytes: not worth a thread hop
        if hook is not None:
            await hook(task)
        await asyncio.sleep(pause)
        return f"{task.id}:" + "x" * size

    return runner


def _append(log, line: str) -> None:
    with open(log, "a") as fh:
        fh.write(line + "\n")


def executions(log) -> collections.Counter[str]:
    return collections.Counter(log.read_text().split() if log.exists() else [])


async def test_a_disk_filling_up_mid_run_loses_nothing(small_disk, tmp_path):
    log = tmp_path / "executed.log"  # on another file system than the store
    g = fan(20)
    store = open_store(small_disk.url)
    await store.ping()  # the database exists; now take the space away
    await store.close()
    small_disk.fill(leave=100 * 1024)

    with pytest.raises(StoreUnavailableError) as info:
        await onb.run(g, runner=logging_runner(log), store=small_disk.url, max_workers=4)
    message = str(info.value)
    assert message.startswith(f"the SQLite store {small_disk.path} is full (database or disk")
    assert "cannot rollback" not in message and "\n" not in message
    stopped = info.value.run
    assert "failed" not in stopped.status.values()  # the store's trouble is no task's failure
    ran_first = executions(log)
    assert set(stopped.results) == set(ran_first)  # everything computed is still in hand
    assert 2 <= len(ran_first) < 20

    small_disk.free()
    finished = await onb.resume(
        stopped, runner=logging_runner(log), store=small_disk.freed_url, max_workers=4
    )
    assert finished.ok
    counts = executions(log)
    assert set(counts) == set(g.tasks) and set(counts.values()) == {1}  # each task ran once
    store = open_store(small_disk.freed_url)
    stored = await store.get_many(finished.keys.values())
    await store.close()
    assert {tid: stored[key] for tid, key in finished.keys.items()} == {
        tid: f"{tid}:" + "x" * 8000 for tid in g.tasks
    }


@pytest.mark.parametrize("direct", ["1", "0"])
async def test_a_full_sqlite_store_raises_its_own_error_and_recovers(small_disk, direct):
    """Every write path — group commit, direct commit, run records, leases — reports the
    full disk, never SQLite's "cannot rollback - no transaction is active"."""
    sep = "&" if "?" in small_disk.url else "?"
    store = open_store(f"{small_disk.url}{sep}direct={direct}")
    try:
        await store.save_run("r", {"state": "running"})
        small_disk.fill(leave=24 * 1024)
        writes = [
            lambda i: store.put(f"k{i}", "v" * 6000),
            lambda i: store.put_many({f"m{i}-{j}": "w" * 6000 for j in range(4)}),
            lambda i: store.save_run_tasks("r", {f"t{i}-{j}": {"e": "x" * 3000} for j in range(8)}),
            lambda i: store.save_run(f"run{i}", {"graph": "g" * 20000}),
        ]

        async def until_it_fails(write):
            for i in range(400):
                await write(i)

        for write in writes:
            with pytest.raises(StoreFullError) as info:
                await until_it_fails(write)
            assert "cannot rollback" not in str(info.value)
            assert str(info.value).startswith(f"the SQLite store {small_disk.path} is full")
            assert info.value.__cause__ is None
        small_disk.free()
        if not small_disk.mounted:  # the cap is the store's own: reopen without it
            await store.close()
            store = open_store(small_disk.freed_url)
        await store.put("after", "space again")
        assert await store.get("after") == "space again"
        assert (await store.load_run("r")).header == {"state": "running"}
    finally:
        await store.close()


# --- Redis killed and restarted --------------------------------------------------------------


@pytest.mark.parametrize("aof", [True, False], ids=["aof", "no-persistence"])
async def test_redis_killed_and_restarted_mid_run(aof, tmp_path):
    server = RedisServer(aof=aof).start()
    log = tmp_path / "executed.log"
    restarts = []

    async def restart(task):
        if task.id == "t6" and not restarts:
            restarts.append(task.id)
            await asyncio.to_thread(_kill_and_start, server)

    try:
        g = fan(16)
        run = await onb.run(
            g, runner=logging_runner(log, size=100, hook=restart), store=server.url, max_workers=4
        )
        assert restarts == ["t6"]
        assert run.ok, run.errors  # the restart was ridden through
        counts = executions(log)
        assert set(counts) == set(g.tasks) and set(counts.values()) == {1}
        assert run.results == {tid: f"{tid}:" + "x" * 100 for tid in g.tasks}

        store = open_store(server.url)
        stored = set(await store.get_many(run.keys.values()))
        await store.close()
        log.unlink()
        if aof:  # nothing committed was lost: a rerun finds everything and executes nothing
            assert stored == set(run.keys.values())
            again = await onb.run(g, runner=logging_runner(log), store=server.url)
            assert set(again.status.values()) == {"cached"}
        else:  # the restart wiped what was committed before it; resuming the run puts it back
            assert stored < set(run.keys.values())
            again = await onb.resume(run, runner=logging_runner(log))
            assert again.ok
            store = open_store(server.url)
            assert len(await store.get_many(run.keys.values())) == 16
            await store.close()
        assert executions(log) == {}  # ...without executing anything again
    finally:
        server.close()


def _kill_and_start(server: RedisServer) -> None:
    server.kill()
    server.start()


# --- leases: processes racing for a run whose owner died -------------------------------------


async def _spawn(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.support.resume_child", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip


async def test_two_processes_race_to_resume_a_dead_owners_run(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    first = tmp_path / "first.log"
    child = await _spawn("run", url, "orphan", str(first))
    deadline = time.monotonic() + 60
    while len(executions(first)) < 15:
        assert time.monotonic() < deadline and child.returncode is None
        await asyncio.sleep(0.02)
    child.send_signal(signal.SIGKILL)  # dies holding the run's lease
    await child.wait()
    store = open_store(url)
    keys = (await store.load_run("orphan")).header["keys"]
    committed = {tid for tid, key in keys.items() if await store.has(key)}
    await store.close()

    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    racers = [await _spawn("resume", url, "orphan", str(log)) for log in logs]
    outcomes = await asyncio.wait_for(asyncio.gather(*(r.communicate() for r in racers)), 120)
    codes = [r.returncode for r in racers]
    assert sorted(codes) == [0, 1], outcomes  # exactly one wins
    winner, loser = (0, 1) if codes[0] == 0 else (1, 0)
    assert outcomes[winner][0].decode().split() == ["finished", "50"]
    assert "LeaseError: run 'orphan' is being executed by another process" in (
        outcomes[loser][1].decode()
    )
    assert executions(logs[loser]) == {}  # the loser executed nothing
    second = executions(logs[winner])
    assert not set(second) & committed  # nothing committed ran again
    assert set(second.values()) == {1}
    assert set(second) | set(executions(first)) == set(keys)  # nothing was left out


async def test_the_lease_error_names_the_live_winner(tmp_path):
    url = f"sqlite:///{tmp_path}/r.db"
    inner = open_store(url)
    dead = f"{os.uname().nodename}:999999999:dead"  # this host, a pid that cannot exist
    winner = "otherhost:4242:winner"
    g = TaskGraph([Task("a")])
    await inner.save_run("race", {"run_id": "race", "graph": g.to_json(), "options": {}})
    assert await inner.acquire_lease("run:race", dead, 30)

    class RaceAfterLookup:
        """The real store; another process takes over the lease right after it is read."""

        def __init__(self, store):
            self._store = store

        def __getattr__(self, name):
            return getattr(self._store, name)

        async def lease_owner(self, name):
            owner = await self._store.lease_owner(name)
            if owner == dead:  # the other process wins the race right here
                assert await self._store.take_over_lease(name, dead, winner, 30)
            return owner

    try:
        with pytest.raises(LeaseError) as info:
            await onb.resume("race", runner=lambda t, i: "x", store=RaceAfterLookup(inner))
        assert winner in str(info.value) and dead not in str(info.value)
    finally:
        await inner.close()
