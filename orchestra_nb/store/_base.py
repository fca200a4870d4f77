"""The ResultStore protocol every backend implements, and the records it returns.

A store keeps three things under a namespace: results (value + codec + meta,
keyed by content hash), run records (a header and one entry per task, upserted
as a run goes, for resume and history), and leases (one live owner per name,
expiring unless renewed, so two kernels cannot execute the same run).

With a signing key (see ``_auth``) every result and run record is written with
an authentication tag, and one without a valid tag is refused when read: a
result is a miss (the task runs again and overwrites it), a run header a
clear ``UnsafeDataError``, a task entry of a run is left out. The helpers that
do this for every backend live here in ``StoreBase``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .._errors import StoreError, UnsafeDataError
from ._auth import split
from ._codecs import Codecs

DEFAULT_NAMESPACE = "orchestra"
log = logging.getLogger("orchestra_nb.store")


@dataclass(frozen=True)
class StoredEntry:
    """A result with what is known about it."""

    key: str
    value: Any
    codec: str
    mime: str
    size: int
    created: float
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunRecord:
    """A run as the store remembers it: its header and one entry per task."""

    run_id: str
    header: dict[str, Any]
    tasks: dict[str, dict[str, Any]]


@runtime_checkable
class ResultStore(Protocol):
    url: str
    namespace: str

    async def get(self, key: str) -> Any: ...
    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...
    async def get_entry(self, key: str) -> StoredEntry | None: ...
    async def put(self, key: str, value: Any, *, meta: Mapping[str, Any] | None = None) -> None: ...
    async def put_many(
        self,
        items: Mapping[str, Any],
        *,
        meta: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None: ...
    async def has(self, key: str) -> bool: ...
    async def has_many(self, keys: Iterable[str]) -> set[str]: ...
    async def delete(self, key: str) -> bool: ...
    async def clear(self) -> int: ...
    async def keys(self) -> list[str]: ...
    async def save_run(self, run_id: str, header: Mapping[str, Any]) -> None: ...
    async def save_run_tasks(
        self, run_id: str, entries: Mapping[str, Mapping[str, Any]]
    ) -> None: ...
    async def load_run(self, run_id: str) -> RunRecord | None: ...
    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]: ...
    async def delete_run(self, run_id: str) -> bool: ...
    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool: ...
    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool: ...
    async def release_lease(self, name: str, owner: str) -> None: ...
    async def lease_owner(self, name: str) -> str | None: ...
    async def take_over_lease(self, name: str, previous: str, owner: str, ttl: float) -> bool: ...
    async def ping(self) -> None: ...
    async def close(self) -> None: ...
    def shared_url(self) -> str | None: ...
    async def __aenter__(self) -> ResultStore: ...
    async def __aexit__(self, *exc: object) -> None: ...


class StoreBase:
    """What every backend shares: codecs, context manager, single-key helpers."""

    url: str
    namespace: str
    codecs: Codecs

    async def get(self, key: str) -> Any:
        found = await self.get_many([key])
        if key not in found:
            raise KeyError(key)
        return found[key]

    async def put(self, key: str, value: Any, *, meta: Mapping[str, Any] | None = None) -> None:
        await self.put_many({key: value}, meta={key: meta} if meta else None)

    async def has(self, key: str) -> bool:
        return key in await self.has_many([key])

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    async def put_many(
        self, items: Mapping[str, Any], *, meta: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:  # pragma: no cover
        raise NotImplementedError

    async def has_many(self, keys: Iterable[str]) -> set[str]:  # pragma: no cover
        raise NotImplementedError

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    def shared_url(self) -> str | None:
        """A URL other processes (cluster workers) can open to reach the same data, secrets
        included — never print it. None when the data lives in this process only."""
        return None

    async def __aenter__(self) -> StoreBase:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def _encode_rows(
        self, items: Mapping[str, Any], meta: Mapping[str, Mapping[str, Any]] | None, now: float
    ) -> list[tuple[str, str, str, bytes, float, str]]:
        """(key, codec, mime, payload, created, meta text) per item; the meta text carries
        the entry's authentication tag when a signing key is set."""
        signer = self.codecs.signer
        rows = []
        for key, value in items.items():
            codec, mime, payload = self.codecs.encode(value)
            extra = json.dumps(dict((meta or {}).get(key) or {}), default=str)
            if signer is not None:
                extra = signer.seal(extra, "result", key, codec, mime, repr(now), payload)
            rows.append((key, codec, mime, payload, now, extra))
        return rows

    def _open_result(
        self, key: str, codec: str, mime: str, payload: bytes, created: float, meta: str
    ) -> str | None:
        """The meta JSON of a stored result; None when a signing key is set and the entry
        is not authenticated by it (unsigned, forged, or moved from another key)."""
        signer = self.codecs.signer
        if signer is None:
            return split(_text(meta))[1]
        try:
            when = repr(float(created))
        except (TypeError, ValueError):
            return None
        return signer.open(_text(meta), "result", key, _text(codec), _text(mime), when, payload)

    def _refused(self, what: str, ids: Collection[str]) -> None:
        if ids:
            shown = ", ".join(repr(i) for i in list(ids)[:5])
            more = f" and {len(ids) - 5} more" if len(ids) > 5 else ""
            log.warning(
                "%s: ignored %d %s not signed with this store's signing key "
                "(unsigned or forged): %s%s",
                self.url,
                len(ids),
                what,
                shown,
                more,
            )

    def _seal_run(self, run_id: str, text: str) -> str:
        signer = self.codecs.signer
        return text if signer is None else signer.seal(text, "run", run_id)

    def _open_run(self, run_id: str, stored: str) -> str | None:
        """A run header's JSON text; None when it is not authenticated by the signing key."""
        signer = self.codecs.signer
        if signer is None:
            return split(stored)[1]
        return signer.open(stored, "run", run_id)

    def _open_run_or_raise(self, run_id: str, stored: str) -> str:
        text = self._open_run(run_id, stored)
        if text is None:
            raise UnsafeDataError(
                f"the record of run {run_id!r} in {self.url} is not signed with this store's "
                "signing key (unsigned or forged); refusing to use it"
            )
        return text

    def _seal_task(self, run_id: str, task_id: str, text: str) -> str:
        signer = self.codecs.signer
        return text if signer is None else signer.seal(text, "task", run_id, task_id)

    def _open_tasks(self, run_id: str, stored: Iterable[tuple[str, str]]) -> dict[str, Any]:
        """Task entries of a run, parsed; entries not authenticated by the key are left out."""
        signer = self.codecs.signer
        out: dict[str, Any] = {}
        refused = []
        for task_id, text in stored:
            body = split(text)[1] if signer is None else signer.open(text, "task", run_id, task_id)
            if body is None:
                refused.append(task_id)
            else:
                out[task_id] = load_record(body, f"{run_id}/{task_id}")
        self._refused(f"task entries of run {run_id!r}", refused)
        return out


def summary(run_id: str, header: Mapping[str, Any], updated: float) -> dict[str, Any]:
    """A run's line in the history: its header without the bulky graph and keys."""
    out = {k: v for k, v in header.items() if k not in ("graph", "keys")}
    out["run_id"] = run_id
    out["updated"] = updated
    return out


def load_record(text: str | bytes, what: str) -> Any:
    """A stored JSON record (a run header, a task entry, a result's meta data)."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise StoreError(f"the stored record {what!r} is not valid JSON") from None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray) else value
