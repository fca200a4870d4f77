"""The ResultStore protocol every backend implements, and the records it returns.

A store keeps three things under a namespace: results (value + codec + meta,
keyed by content hash), run records (a header and one entry per task, upserted
as a run goes, for resume and history), and leases (one live owner per name,
expiring unless renewed, so two kernels cannot execute the same run).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ._codecs import Codecs

DEFAULT_NAMESPACE = "orchestra"


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
        rows = []
        for key, value in items.items():
            codec, mime, payload = self.codecs.encode(value)
            extra = json.dumps(dict((meta or {}).get(key) or {}), default=str)
            rows.append((key, codec, mime, payload, now, extra))
        return rows


def summary(run_id: str, header: Mapping[str, Any], updated: float) -> dict[str, Any]:
    """A run's line in the history: its header without the bulky graph and keys."""
    out = {k: v for k, v in header.items() if k not in ("graph", "keys")}
    out["run_id"] = run_id
    out["updated"] = updated
    return out
