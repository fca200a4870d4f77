"""A run's store I/O: cached lookups, result commits, run records and the lease.

Everything a run reads from or writes to its store goes through ``RunRecords``;
the driver never touches the store itself. What it writes:

* the **header** (goal, graph as JSON, options, cache keys, state), when the run
  starts and when it ends;
* one **task record** per finished task (status, attempts, times, error, key),
  batched: records are marked dirty and flushed at most every 0.25 s, so a
  10,000-task run makes a few dozen writes, and after a crash ``resume`` finds
  every committed result and runs only the rest;
* **results**, each committed before its task is reported done — unless a
  cluster worker already committed it (the executor hands back a
  ``StoredResult`` under the task's own key);
* the **lease**: one live owner per run, renewed while it runs, so two kernels
  cannot execute the same run; a dead owner on this host (a killed kernel) is
  cleared at once instead of waiting for its lease to expire.

A store that cannot be reached raises ``StoreUnavailableError`` out of the
direct calls; a background flush that fails calls ``on_unavailable`` instead and
keeps its records for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .._errors import LeaseError, StoreError, StoreUnavailableError
from ..store import StoredResult

if TYPE_CHECKING:
    from .._plan import TaskGraph
    from ..store import ResultStore, RunRecord
    from ._options import RunOptions
    from ._state import RunState

log = logging.getLogger("orchestra_nb")

FLUSH_EVERY = 0.25  # seconds between batched writes of per-task records


class RunRecords:
    """The store side of one run (see the module docstring)."""

    def __init__(
        self,
        store: ResultStore,
        run_id: str,
        *,
        owns_store: bool,
        lease_ttl: float,
        lease_owner: str | None = None,
        on_unavailable: Callable[[StoreError], None] = lambda exc: None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.owns_store = owns_store
        self.lease_ttl = lease_ttl
        self.lease_name = f"run:{run_id}"
        self.lease_owner = lease_owner or new_lease_owner()
        self.on_unavailable = on_unavailable
        self.holds_lease = False
        self._dirty: dict[str, dict[str, Any]] = {}
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._renewal: asyncio.Task[None] | None = None
        self.broken = False  # the store failed: stop writing until the run is resumed

    # --- results -------------------------------------------------------------------------

    async def lookup(self, keys: Iterable[str]) -> dict[str, Any]:
        """The stored results among ``keys`` (one batch read)."""
        wanted = set(keys)
        return await self.store.get_many(wanted) if wanted else {}

    async def commit(self, key: str, value: Any, meta: Mapping[str, Any]) -> None:
        """Store a task's result; a ``StoredResult`` under this very key is already there."""
        if isinstance(value, StoredResult) and value.key == key:
            return
        await self.store.put(key, value, meta=meta)

    async def recommit(self, results: Mapping[str, Any], *, reason: str) -> None:
        """Write results held in memory that the store lacks (computed while it was down,
        or lost by a store that restarted empty)."""
        if results:
            meta = {key: {"run_id": self.run_id, "recommitted": reason} for key in results}
            await self.store.put_many(results, meta=meta)

    # --- run records -----------------------------------------------------------------------

    def header(
        self,
        graph: TaskGraph,
        state: RunState,
        options: RunOptions,
        *,
        created: float | None,
        approve: str | list[str] | None,
    ) -> dict[str, Any]:
        """The run's header as the store keeps it."""
        return {
            "run_id": self.run_id,
            "created": created or state.started_at,
            "state": state.state,
            "finished": state.finished_at,
            "error": state.error,
            "goal": graph.goal,
            # JSON text (from_plan reads it back), built once per graph: a string is one
            # object the garbage collector ignores, the plan as dicts two per task it tracks
            "graph": graph.to_json(indent=None),
            "keys": state.keys,
            "options": options.to_record(),
            "approve": approve,
            "tasks": len(state.status),
        }

    async def save_header(self, header: Mapping[str, Any]) -> None:
        await self.store.save_run(self.run_id, header)

    def task_changed(self, tid: str, entry: dict[str, Any]) -> None:
        """Mark a task's record for the next batched write."""
        self._dirty[tid] = entry
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if self._flush_handle is None and (self._flush_task is None or self._flush_task.done()):
            loop = asyncio.get_running_loop()
            self._flush_handle = loop.call_later(FLUSH_EVERY, self._start_flush)

    def _start_flush(self) -> None:
        self._flush_handle = None
        self._flush_task = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Write every dirty task record now."""
        if not self._dirty or self.broken:
            return
        batch, self._dirty = self._dirty, {}
        try:
            await self.store.save_run_tasks(self.run_id, batch)
        except StoreUnavailableError as exc:
            self._dirty = {**batch, **self._dirty}
            self.on_unavailable(exc)
        except StoreError:
            log.exception("could not write run records of %s", self.run_id)
        if self._dirty and not self.broken:
            self._schedule_flush()

    async def decisions(self) -> dict[str, tuple[bool, str]]:
        """Approvals and rejections other processes wrote into this run's task records."""
        from ._gates import carried_decisions

        record = await self.store.load_run(self.run_id)
        return carried_decisions(record.tasks) if record is not None else {}

    async def finish(self, header: Mapping[str, Any]) -> None:
        """The run ended: write the last records and the final header, free the lease."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._flush_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._flush_task
        if self.broken or not self.holds_lease:
            return  # nothing to write, or another process owns the run's records
        try:
            await self.flush()
            await self.save_header(header)
            if self.holds_lease:
                await self.store.release_lease(self.lease_name, self.lease_owner)
                self.holds_lease = False
        except StoreUnavailableError as exc:
            self.on_unavailable(exc)

    async def close(self) -> None:
        """Close the store if this run opened it."""
        if self.owns_store:
            with contextlib.suppress(Exception):
                await self.store.close()

    # --- the lease -----------------------------------------------------------------------

    async def take_lease(self) -> None:
        """Become the run's one executor, or raise ``LeaseError`` naming who is."""
        store, name, me, ttl = self.store, self.lease_name, self.lease_owner, self.lease_ttl
        if not await store.acquire_lease(name, me, ttl):
            holder = await store.lease_owner(name)
            if holder and _owner_is_dead(holder):
                await store.release_lease(name, holder)
                if not await store.acquire_lease(name, me, ttl):
                    holder = await store.lease_owner(name)  # who won the race for it
                    raise _lease_error(self.run_id, holder, ttl)
            else:
                raise _lease_error(self.run_id, holder, ttl)
        self.holds_lease = True
        self._renewal = asyncio.ensure_future(self._renew())

    async def stop_renewing(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None

    async def _renew(self) -> None:
        ttl = self.lease_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                if not await self.store.renew_lease(self.lease_name, self.lease_owner, ttl):
                    log.warning("lost the lease on run %s", self.run_id)
            except StoreError as exc:
                log.warning("could not renew the lease on run %s: %s", self.run_id, exc)


async def load_record(store: ResultStore, run_id: str) -> RunRecord:
    """A stored run's record, or ``RunError`` naming the store."""
    from .._errors import RunError

    record = await store.load_run(run_id)
    if record is None:
        raise RunError(f"no run {run_id!r} in the store {store.url}")
    return record


def new_lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _lease_error(run_id: str, holder: str | None, ttl: float) -> LeaseError:
    return LeaseError(
        f"run {run_id!r} is being executed by another process ({holder or 'unknown'}); "
        f"wait for it to finish or for its lease to expire ({ttl:g} s)"
    )


def _owner_is_dead(owner: str) -> bool:
    """A lease owner on this host whose process is gone (e.g. a killed kernel)."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
