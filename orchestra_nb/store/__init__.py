"""Result stores: where every intermediate result, run record and lease lives.

``open_store(url)`` picks the backend from the URL: ``memory://`` (in-process),
``sqlite:///path.db`` (the embedded default) or ``redis://host:6379/0`` (shared).
Opening is cheap and lazy; nothing connects until first use.
"""

from __future__ import annotations

from typing import Any

from ._base import DEFAULT_NAMESPACE, ResultStore, RunRecord, StoredEntry
from ._codecs import BUILTIN, Codec, Codecs
from ._reference import StoredResult, resolve
from ._url import DEFAULT_URL, default_url, query_options, redact, scheme_of, sqlite_path

__all__ = [
    "BUILTIN",
    "DEFAULT_NAMESPACE",
    "DEFAULT_URL",
    "Codec",
    "Codecs",
    "ResultStore",
    "RunRecord",
    "StoredEntry",
    "StoredResult",
    "open_store",
    "redact",
    "resolve",
]


def open_store(
    url: str | ResultStore | None = None,
    *,
    signing_key: bytes | str | None = None,
    codecs: Codecs | None = None,
    ttl: float | None = None,
    namespace: str | None = None,
) -> ResultStore:
    """A store for a URL (None: ``ORCHESTRA_STORE`` or ``sqlite:///.orchestra/results.db``).

    ``signing_key`` opts in to signed pickle for values no codec handles; ``ttl``
    (seconds) applies to Redis; ``namespace`` separates projects sharing a store.
    A ``ResultStore`` passed in is returned unchanged.
    """
    if url is not None and not isinstance(url, str):
        return url
    url = url or default_url()
    scheme = scheme_of(url)
    chosen = (codecs or Codecs()).with_key(signing_key) if signing_key else (codecs or Codecs())
    ns = namespace or query_options(url).get("namespace")
    if scheme == "memory":
        from ._memory import MemoryStore

        return MemoryStore(url, codecs=chosen, namespace=ns)
    if scheme == "sqlite":
        from ._sqlite import SQLiteStore

        direct = query_options(url).get("direct", "1") not in ("0", "false", "no")
        return SQLiteStore(sqlite_path(url), url=url, codecs=chosen, namespace=ns, direct=direct)
    from ._redis import RedisStore

    return RedisStore(url, codecs=chosen, namespace=ns, ttl=ttl)


def __getattr__(name: str) -> Any:
    if name in ("MemoryStore", "SQLiteStore", "RedisStore"):
        import importlib

        module = {"MemoryStore": "._memory", "SQLiteStore": "._sqlite", "RedisStore": "._redis"}
        return getattr(importlib.import_module(module[name], __name__), name)
    raise AttributeError(name)
