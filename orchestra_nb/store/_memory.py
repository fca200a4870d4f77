"""An in-process store: Python objects in dicts, for tests, scripts and benchmarks.

Values are kept as they are (no encoding: this store is on the engine's hot
path), but a value no codec could encode is refused here too, so code that
works on ``memory://`` also works on SQLite and Redis. ``memory://NAME`` gives a
process-wide store shared by everyone who opens that name.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._values import Image
from ._base import DEFAULT_NAMESPACE, RunRecord, StoreBase, StoredEntry, summary
from ._codecs import Codecs


class _Data:
    def __init__(self) -> None:
        self.results: dict[str, tuple[Any, ...]] = {}  # value, codec, mime, created, *meta
        self.runs: dict[str, tuple[dict[str, Any], float]] = {}
        self.run_tasks: dict[str, dict[str, dict[str, Any]]] = {}
        self.leases: dict[str, tuple[str, float]] = {}


_NAMED: dict[tuple[str, str], _Data] = {}


class MemoryStore(StoreBase):
    def __init__(
        self, url: str = "memory://", *, codecs: Codecs | None = None, namespace: str | None = None
    ) -> None:
        self.url = url
        self.namespace = namespace or DEFAULT_NAMESPACE
        self.codecs = codecs or Codecs()
        name = url.split("://", 1)[1].split("?", 1)[0] if "://" in url else ""
        if name:
            self._data = _NAMED.setdefault((name, self.namespace), _Data())
        else:
            self._data = _Data()
        # plain str goes straight to "text" unless a custom codec comes first
        self._fast_str = [c.name for c in self.codecs][:2] == ["markdown", "text"]

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        results = self._data.results
        return {k: results[k][0] for k in keys if k in results}

    async def get_entry(self, key: str) -> StoredEntry | None:
        row = self._data.results.get(key)
        if row is None:
            return None
        value, codec, mime, created, *meta = row
        size = len(self.codecs.encode(value)[2]) if codec != "pickle" else 0
        meta_dict = dict(zip(meta[::2], meta[1::2], strict=True))
        return StoredEntry(key, value, codec, mime, size, created, meta_dict)

    async def put(self, key: str, value: Any, *, meta: Mapping[str, Any] | None = None) -> None:
        # A row is one flat tuple, meta's keys and values at its end: the garbage
        # collector stops tracking a tuple of plain values, while one holding a dict
        # (or another tuple, for a while) stays tracked, and there is a row per result.
        flat = _flat(meta)
        if type(value) is str and self._fast_str:  # the common case, without a lookup
            row = (value, "text", "text/plain", time.time(), *flat)
        elif value is None:
            row = (None, "json", "application/json", time.time(), *flat)
        else:
            row = (*self._describe(value), time.time(), *flat)
        self._data.results[key] = row

    async def put_many(
        self, items: Mapping[str, Any], *, meta: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        now = time.time()
        described = {k: self._describe(v) for k, v in items.items()}  # refuse before writing
        for key, (value, codec, mime) in described.items():
            self._data.results[key] = (value, codec, mime, now, *_flat((meta or {}).get(key)))

    def _describe(self, value: Any) -> tuple[Any, str, str]:
        """(value as kept, codec, mime); a figure is kept as its PNG, like the other stores."""
        for codec in self.codecs:
            if codec.accepts(value):
                if codec.name == "figure":
                    value = Image.from_figure(value)
                return value, codec.name, codec.mime_of(value)
        if self.codecs.signed_pickle:
            return value, "pickle", "application/x-python-pickle"
        self.codecs.encode(value)  # raises the StoreError that names the type
        raise AssertionError("unreachable")

    async def has_many(self, keys: Iterable[str]) -> set[str]:
        results = self._data.results
        return {k for k in keys if k in results}

    async def delete(self, key: str) -> bool:
        return self._data.results.pop(key, None) is not None

    async def clear(self) -> int:
        data = self._data
        count = len(data.results) + len(data.runs)
        data.results.clear()
        data.runs.clear()
        data.run_tasks.clear()
        data.leases.clear()
        return count

    async def keys(self) -> list[str]:
        return list(self._data.results)

    async def save_run(self, run_id: str, header: Mapping[str, Any]) -> None:
        # kept as given: the engine builds a fresh header for every save
        self._data.runs[run_id] = (dict(header), time.time())
        self._data.run_tasks.setdefault(run_id, {})

    async def save_run_tasks(self, run_id: str, entries: Mapping[str, Mapping[str, Any]]) -> None:
        tasks = self._data.run_tasks.setdefault(run_id, {})
        for tid, entry in entries.items():
            tasks[tid] = dict(entry)
        if run_id in self._data.runs:
            header, _ = self._data.runs[run_id]
            self._data.runs[run_id] = (header, time.time())

    async def load_run(self, run_id: str) -> RunRecord | None:
        found = self._data.runs.get(run_id)
        if found is None:
            return None
        tasks = self._data.run_tasks.get(run_id, {})
        return RunRecord(run_id, copy.deepcopy(found[0]), {k: dict(v) for k, v in tasks.items()})

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        ordered = sorted(self._data.runs.items(), key=lambda kv: kv[1][1], reverse=True)
        return [summary(rid, header, updated) for rid, (header, updated) in ordered[:limit]]

    async def delete_run(self, run_id: str) -> bool:
        self._data.run_tasks.pop(run_id, None)
        return self._data.runs.pop(run_id, None) is not None

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = time.monotonic()
        held = self._data.leases.get(name)
        if held is not None and held[1] > now and held[0] != owner:
            return False
        self._data.leases[name] = (owner, now + ttl)
        return True

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        held = self._data.leases.get(name)
        if held is None or held[0] != owner or held[1] <= time.monotonic():
            return False
        self._data.leases[name] = (owner, time.monotonic() + ttl)
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        held = self._data.leases.get(name)
        if held is not None and held[0] == owner:
            del self._data.leases[name]

    async def lease_owner(self, name: str) -> str | None:
        held = self._data.leases.get(name)
        if held is None or held[1] <= time.monotonic():
            return None
        return held[0]


def _flat(meta: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """meta's keys and values, alternating."""
    return tuple(itertools.chain.from_iterable(meta.items())) if meta else ()
