"""The embedded default store: one SQLite file, safe with several kernels at once.

WAL mode lets readers and one writer work together across processes.
``synchronous=NORMAL`` keeps commits cheap: a committed transaction survives
the process being killed (the crash that matters for a kernel); only a power
loss or OS crash can take back the last few commits.

SQLite calls that can wait — reads, big writes, anything that meets a lock —
run on one dedicated thread per store. Writes use *group commit*: ``put``
calls that arrive while a commit is in flight are written together in the next
transaction, and each returns only once its own row is committed.

One exception keeps a chain of small tasks fast: a small write when nothing
else is writing is committed directly from the event loop on a second
connection whose busy timeout is zero (a lock held by another process makes it
fall back to the thread at once, never wait) and which never checkpoints (the
store's thread runs passive checkpoints now and then). Such a commit appends a
few pages to the WAL without an fsync: it costs about as much as the Python
around it, where a round trip to the thread costs several times more. Open the
store with ``?direct=0`` to route every write through the thread.

``?max_size=100MB`` caps the database file (SQLite's ``max_page_count``): a
cache on a shared disk cannot fill it. When the cap is reached, or the disk is
full, SQLite rolls the
transaction back itself; the store then raises ``StoreFullError`` (a
``StoreUnavailableError``: a condition of the store, never of the task whose
result was being written) and never a second error from rolling back again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode

from .._errors import StoreFullError, StoreUnavailableError
from ._base import DEFAULT_NAMESPACE, RunRecord, StoreBase, StoredEntry, load_record, summary
from ._codecs import Codecs

T = TypeVar("T")
SCHEMA_VERSION = 1
_CHUNK = 500  # keys per IN (...) query
_DIRECT_MAX_BYTES = 64 * 1024  # larger writes always go through the thread
_CHECKPOINT_EVERY = 1000  # direct commits between passive checkpoints on the thread
_INSERT = "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS results (
    ns TEXT NOT NULL, key TEXT NOT NULL, codec TEXT NOT NULL, mime TEXT NOT NULL,
    data BLOB NOT NULL, created REAL NOT NULL, meta TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (ns, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    ns TEXT NOT NULL, run_id TEXT NOT NULL, header TEXT NOT NULL, updated REAL NOT NULL,
    PRIMARY KEY (ns, run_id));
CREATE INDEX IF NOT EXISTS runs_updated ON runs (ns, updated);
CREATE TABLE IF NOT EXISTS run_tasks (
    ns TEXT NOT NULL, run_id TEXT NOT NULL, task_id TEXT NOT NULL, entry TEXT NOT NULL,
    PRIMARY KEY (ns, run_id, task_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (
    ns TEXT NOT NULL, name TEXT NOT NULL, owner TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (ns, name));
"""


class SQLiteStore(StoreBase):
    def __init__(
        self,
        path: str | Path,
        *,
        url: str | None = None,
        codecs: Codecs | None = None,
        namespace: str | None = None,
        direct: bool = True,
        max_size: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.direct = direct
        self.max_size = max_size
        self._direct: sqlite3.Connection | None = None
        self._direct_commits = 0
        self._checkpoint: asyncio.Task[Any] | None = None
        self.url = url or f"sqlite:///{path}"
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.codecs = codecs or Codecs()
        self.stats = {"commits": 0, "rows": 0}
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        # group commit: (rows, future) waiting for the next transaction
        self._pending: list[tuple[list[tuple[Any, ...]], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    # --- the worker thread ---------------------------------------------------------

    async def _call(self, func: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="orchestra-sqlite")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._guarded, func, args)

    def _guarded(self, func: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return func(self._connection(), *args)
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: sqlite3.Error) -> StoreUnavailableError:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return StoreFullError(f"the SQLite store {self.path} is full ({exc}): free some space")
        return StoreUnavailableError(f"SQLite store {self.path} failed: {exc}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=30000")
                self._cap(conn)
                conn.executescript(_SCHEMA)
                if conn.execute("SELECT count(*) FROM schema_version").fetchone()[0] == 0:
                    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            except sqlite3.Error as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise self._error(exc) from None
                raise StoreUnavailableError(
                    f"cannot open the SQLite store {self.path}: {exc}"
                ) from None
            except OSError as exc:
                raise StoreUnavailableError(
                    f"cannot open the SQLite store {self.path}: {exc}"
                ) from None
            self._conn = conn
        return self._conn

    def _cap(self, conn: sqlite3.Connection) -> None:
        if self.max_size is not None:
            page = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count={max(1, self.max_size // page)}")

    # --- results ------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        rows = await self._call(_select_results, self.namespace, list(keys), False)
        if self.codecs.signer is None:
            return {
                key: self.codecs.decode(codec, data, key=key) for key, codec, _m, data, *_ in rows
            }
        out: dict[str, Any] = {}
        refused = []
        for key, codec, mime, data, created, meta in rows:
            if self._open_result(key, codec, mime, data, created, meta) is None:
                refused.append(key)
            else:
                out[key] = self.codecs.decode(codec, data, key=key)
        self._refused("results", refused)
        return out

    async def get_entry(self, key: str) -> StoredEntry | None:
        rows = await self._call(_select_results, self.namespace, [key], False)
        if not rows:
            return None
        _k, codec, mime, data, created, meta = rows[0]
        text = self._open_result(key, codec, mime, data, created, meta)
        if text is None:
            self._refused("results", [key])
            return None
        value = self.codecs.decode(codec, data, key=key)
        return StoredEntry(key, value, codec, mime, len(data), created, load_record(text, key))

    async def has_many(self, keys: Iterable[str]) -> set[str]:
        if self.codecs.signer is not None:  # only an authenticated entry counts as there
            rows = await self._call(_select_results, self.namespace, list(keys), False)
            return {r[0] for r in rows if self._open_result(*r) is not None}
        rows = await self._call(_select_results, self.namespace, list(keys), True)
        return {row[0] for row in rows}

    async def put_many(
        self, items: Mapping[str, Any], *, meta: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        ns = self.namespace
        rows = [(ns, *row) for row in self._encode_rows(items, meta, time.time())]
        if not rows:
            return
        idle = self._writer is None or self._writer.done()
        small = sum(len(r[4]) for r in rows) <= _DIRECT_MAX_BYTES
        if idle and self.direct and small and self._write_direct(rows):
            return
        future = asyncio.get_running_loop().create_future()
        self._pending.append((rows, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.ensure_future(self._write_pending())
        await future

    def _write_direct(self, rows: list[tuple[Any, ...]]) -> bool:
        """Commit from the loop if the database is free this instant; False: use the thread."""
        conn = self._direct
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=0, isolation_level=None, check_same_thread=False
                )
                conn.execute("PRAGMA busy_timeout=0")
                conn.execute("PRAGMA wal_autocheckpoint=0")
                conn.execute("PRAGMA synchronous=NORMAL")
                self._cap(conn)
            except sqlite3.Error:
                return False
            self._direct = conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error:  # locked by another writer, or not set up yet
            return False
        try:
            conn.executemany(_INSERT, rows)
            conn.execute("COMMIT")
        except sqlite3.Error:
            # SQLite may have rolled back already (a full disk does): the thread retries
            # the write and reports the store's condition
            _rollback(conn)
            return False
        self.stats["commits"] += 1
        self.stats["rows"] += len(rows)
        self._direct_commits += 1
        if self._direct_commits % _CHECKPOINT_EVERY == 0 and (
            self._checkpoint is None or self._checkpoint.done()
        ):
            self._checkpoint = asyncio.ensure_future(
                self._call(_fetch, "PRAGMA wal_checkpoint(PASSIVE)", ())
            )
        return True

    async def _write_pending(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [row for rows, _ in batch for row in rows]
            try:
                await self._call(_insert_results, rows)
            except BaseException as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                self.stats["commits"] += 1
                self.stats["rows"] += len(rows)
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)

    async def delete(self, key: str) -> bool:
        return await self._call(
            _execute_count, "DELETE FROM results WHERE ns=? AND key=?", (self.namespace, key)
        )

    async def clear(self) -> int:
        return await self._call(_clear, self.namespace)

    async def keys(self) -> list[str]:
        rows = await self._call(_fetch, "SELECT key FROM results WHERE ns=?", (self.namespace,))
        return [r[0] for r in rows]

    # --- runs -----------------------------------------------------------------------------

    async def save_run(self, run_id: str, header: Mapping[str, Any]) -> None:
        text = self._seal_run(run_id, json.dumps(dict(header), default=str))
        await self._call(
            _execute_count,
            "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?)",
            (self.namespace, run_id, text, time.time()),
        )

    async def save_run_tasks(self, run_id: str, entries: Mapping[str, Mapping[str, Any]]) -> None:
        rows = [
            (
                self.namespace,
                run_id,
                tid,
                self._seal_task(run_id, tid, json.dumps(dict(e), default=str)),
            )
            for tid, e in entries.items()
        ]
        if rows:
            await self._call(_save_tasks, self.namespace, run_id, rows, time.time())

    async def load_run(self, run_id: str) -> RunRecord | None:
        found = await self._call(_load_run, self.namespace, run_id)
        if found is None:
            return None
        header, tasks = found
        text = self._open_run_or_raise(run_id, header)
        return RunRecord(run_id, load_record(text, run_id), self._open_tasks(run_id, tasks))

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = await self._call(
            _fetch,
            "SELECT run_id, header, updated FROM runs WHERE ns=? ORDER BY updated DESC LIMIT ?",
            (self.namespace, limit),
        )
        out, refused = [], []
        for rid, stored, updated in rows:
            text = self._open_run(rid, stored)
            if text is None:
                refused.append(rid)
            else:
                out.append(summary(rid, load_record(text, rid), updated))
        self._refused("run records", refused)
        return out

    async def delete_run(self, run_id: str) -> bool:
        return await self._call(_delete_run, self.namespace, run_id)

    # --- leases ---------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        return await self._call(_acquire, self.namespace, name, owner, ttl)

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        return await self._call(
            _execute_count,
            "UPDATE leases SET expires=? WHERE ns=? AND name=? AND owner=? AND expires>?",
            (time.time() + ttl, self.namespace, name, owner, time.time()),
        )

    async def release_lease(self, name: str, owner: str) -> None:
        await self._call(
            _execute_count,
            "DELETE FROM leases WHERE ns=? AND name=? AND owner=?",
            (self.namespace, name, owner),
        )

    async def take_over_lease(self, name: str, previous: str, owner: str, ttl: float) -> bool:
        """Give the lease to ``owner`` only if ``previous`` still holds it (expired or not):
        of several processes taking over from a dead owner, exactly one wins."""
        return await self._call(
            _execute_count,
            "UPDATE leases SET owner=?, expires=? WHERE ns=? AND name=? AND owner=?",
            (owner, time.time() + ttl, self.namespace, name, previous),
        )

    async def lease_owner(self, name: str) -> str | None:
        rows = await self._call(
            _fetch,
            "SELECT owner FROM leases WHERE ns=? AND name=? AND expires>?",
            (self.namespace, name, time.time()),
        )
        return rows[0][0] if rows else None

    async def ping(self) -> None:
        await self._call(_fetch, "SELECT 1", ())

    def shared_url(self) -> str | None:
        query = urlencode({"namespace": self.namespace})
        return f"sqlite:///{self.path.resolve()}?{query}"  # same machine

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            await self._writer
        if self._checkpoint is not None and not self._checkpoint.done():
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        direct, self._direct = self._direct, None
        if direct is not None:
            direct.close()
        executor, self._executor = self._executor, None
        if executor is not None:
            conn, self._conn = self._conn, None
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)


# --- SQL run on the store's thread ---------------------------------------------------------


def _select_results(conn: sqlite3.Connection, ns: str, keys: list[str], only_keys: bool) -> list:
    columns = "key" if only_keys else "key, codec, mime, data, created, meta"
    out: list = []
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.extend(
            conn.execute(
                f"SELECT {columns} FROM results WHERE ns=? AND key IN ({marks})", (ns, *chunk)
            ).fetchall()
        )
    return out


def _insert_results(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    with _transaction(conn):
        conn.executemany(_INSERT, rows)


def _execute_count(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> bool:
    with _transaction(conn):
        return conn.execute(sql, params).rowcount > 0


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[Any, ...]) -> list:
    return conn.execute(sql, params).fetchall()


def _clear(conn: sqlite3.Connection, ns: str) -> int:
    with _transaction(conn):
        count = conn.execute("DELETE FROM results WHERE ns=?", (ns,)).rowcount
        count += conn.execute("DELETE FROM runs WHERE ns=?", (ns,)).rowcount
        conn.execute("DELETE FROM run_tasks WHERE ns=?", (ns,))
        conn.execute("DELETE FROM leases WHERE ns=?", (ns,))
    return count


def _save_tasks(conn: sqlite3.Connection, ns: str, run_id: str, rows: list, now: float) -> None:
    with _transaction(conn):
        conn.executemany("INSERT OR REPLACE INTO run_tasks VALUES (?, ?, ?, ?)", rows)
        conn.execute("UPDATE runs SET updated=? WHERE ns=? AND run_id=?", (now, ns, run_id))


def _load_run(conn: sqlite3.Connection, ns: str, run_id: str) -> tuple[str, list] | None:
    row = conn.execute("SELECT header FROM runs WHERE ns=? AND run_id=?", (ns, run_id)).fetchone()
    if row is None:
        return None
    tasks = conn.execute(
        "SELECT task_id, entry FROM run_tasks WHERE ns=? AND run_id=?", (ns, run_id)
    ).fetchall()
    return row[0], tasks


def _delete_run(conn: sqlite3.Connection, ns: str, run_id: str) -> bool:
    with _transaction(conn):
        conn.execute("DELETE FROM run_tasks WHERE ns=? AND run_id=?", (ns, run_id))
        return conn.execute("DELETE FROM runs WHERE ns=? AND run_id=?", (ns, run_id)).rowcount > 0


def _acquire(conn: sqlite3.Connection, ns: str, name: str, owner: str, ttl: float) -> bool:
    now = time.time()
    with _transaction(conn):  # BEGIN IMMEDIATE: two processes cannot both see the lease free
        row = conn.execute(
            "SELECT owner, expires FROM leases WHERE ns=? AND name=?", (ns, name)
        ).fetchone()
        if row is not None and row[1] > now and row[0] != owner:
            return False
        conn.execute(
            "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)", (ns, name, owner, now + ttl)
        )
        return True


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back what is still open. After SQLITE_FULL (and some I/O errors) SQLite has
    rolled back on its own; a second ROLLBACK would only raise "no transaction is
    active" in place of the error that matters."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


class _transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection.

    The error that ended the transaction is the one raised, never one from
    cleaning up after it; a failed COMMIT rolls back what is left.
    """

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            _rollback(self.conn)
            return
        try:
            self.conn.execute("COMMIT")
        except sqlite3.Error:
            _rollback(self.conn)
            raise
