"""A shared store on Redis: results and run records any kernel or worker can see.

Every key this store writes carries a TTL (24 h unless ``?ttl=`` says otherwise),
set in the same MULTI as the write. Keys live under a namespace:
``{ns}:r:{key}`` (a hash: codec, mime, data, created, meta), ``{ns}:run:{id}``
(the header), ``{ns}:runtasks:{id}`` (a hash of task entries), ``{ns}:runs`` (a
sorted set by update time) and ``{ns}:lease:{name}``. In key names the
namespace is written with ``%`` and ``:`` percent-encoded, so the first ``:``
of a key always ends its namespace: namespace ``proj`` can never see, list or
clear the keys of ``proj:alice``.

The URL's query holds this store's own options (``namespace``, ``ttl``) and
redis-py's connection options (``password``, ``username``, ``db``,
``socket_timeout``...); an unknown option is a ``ConfigError``, never silently
dropped. A password, wherever it is given, is used to connect and is never
shown: reprs and errors use the redacted URL.

The client connects lazily on the running loop and reconnects when used from a
later loop (notebooks and scripts do that). Dropped connections and refused
connects are retried by redis-py's asyncio ``Retry`` (the synchronous one,
handed to the asyncio client, silently never retries) with exponential backoff
for about three and a half seconds — long enough to ride through a Redis
restart — then reported as a ``StoreUnavailableError`` naming the URL without
its password.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode

from .._errors import ConfigError, StoreUnavailableError
from ._base import DEFAULT_NAMESPACE, RunRecord, StoreBase, StoredEntry, load_record, summary
from ._codecs import Codecs
from ._url import redact

DEFAULT_TTL = 24 * 3600
#: Options of this store itself; every other query parameter goes to redis-py.
_OWN_OPTIONS = ("namespace", "ttl")
#: Retries of a command whose connection dropped or was refused, waiting 0.1, 0.2, 0.4, 0.8,
#: 1 and 1 s before them: a Redis restart of up to 3.5 s is ridden through. A host that
#: does not answer at all costs 7 connect timeouts on top (about 14 s), never a hang.
_RETRIES = 6
_BACKOFF_BASE = 0.05
_BACKOFF_CAP = 1.0
_CONNECT_TIMEOUT = 1.5

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
_TAKE_OVER = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('set', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


class RedisStore(StoreBase):
    def __init__(
        self,
        url: str,
        *,
        codecs: Codecs | None = None,
        namespace: str | None = None,
        ttl: float | None = None,
    ) -> None:
        self.url = redact(url)
        base, _, query = url.partition("?")
        own: dict[str, str] = {}
        connection: list[tuple[str, str]] = []
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name in _OWN_OPTIONS:
                own[name] = value
            else:
                connection.append((name, value))
        if connection:
            _check_connection_options(connection, self.url)
        self._raw_url = base
        self._connection_query = connection
        self.namespace = namespace or own.get("namespace") or DEFAULT_NAMESPACE
        self._prefix = _encode_namespace(self.namespace)
        try:
            self.ttl = int(ttl if ttl is not None else float(own.get("ttl", DEFAULT_TTL)))
        except ValueError:
            raise ConfigError(f"bad ttl in the store URL {self.url}: use ?ttl=SECONDS") from None
        if self.ttl <= 0:
            raise ValueError(f"ttl must be positive seconds, not {self.ttl}")
        self.codecs = codecs or Codecs()
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._secrets = _secrets_of(url)

    # --- connection -------------------------------------------------------------------

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis
            from redis.backoff import ExponentialBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import TimeoutError as RedisTimeoutError

            url = self._raw_url
            if self._connection_query:
                url += "?" + urlencode(self._connection_query)
            self._client = aioredis.Redis.from_url(
                url,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                socket_timeout=10,
                retry=_retry(ExponentialBackoff(cap=_BACKOFF_CAP, base=_BACKOFF_BASE), _RETRIES),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                health_check_interval=30,
            )
            self._loop = loop
        return self._client

    async def _do(self, coro_factory: Any) -> Any:
        """Run one command (or pipeline); connection trouble becomes StoreUnavailableError."""
        from redis.exceptions import AuthenticationError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return await coro_factory(self._redis())
        except (AuthenticationError, _CredentialsRefused) as exc:
            error = exc.error if isinstance(exc, _CredentialsRefused) else exc
            raise StoreUnavailableError(
                f"Redis at {self.url} refused the credentials: {self._reason(error)}"
            ) from None
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise StoreUnavailableError(
                f"cannot reach Redis at {self.url}: {self._reason(exc)}"
            ) from None

    def _reason(self, exc: BaseException) -> str:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            reason = reason.replace(secret, "***")
        return reason

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self._prefix}:{kind}:{name}" if name else f"{self._prefix}:{kind}"

    # --- results ------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        if self.codecs.signer is None:
            rows = await self._fetch(keys, ("codec", "data"))
            return {
                key: self.codecs.decode(codec.decode(), data, key=key)
                for key, (codec, data) in zip(keys, rows, strict=True)
                if codec is not None
            }
        rows = await self._fetch(keys, _FIELDS)
        out: dict[str, Any] = {}
        refused = []
        for key, (codec, mime, data, created, meta) in zip(keys, rows, strict=True):
            if codec is None:
                continue
            if (
                self._open_result(key, codec, mime or b"", data or b"", created, meta or b"")
                is None
            ):
                refused.append(key)
            else:
                out[key] = self.codecs.decode(codec.decode(), data, key=key)
        self._refused("results", refused)
        return out

    async def _fetch(self, keys: list[str], fields: tuple[str, ...]) -> list[list[Any]]:
        if not keys:
            return []

        async def run(r: Any) -> list[list[Any]]:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hmget(self._k("r", key), *fields)
                return await pipe.execute()

        return await self._do(run)

    async def get_entry(self, key: str) -> StoredEntry | None:
        rows = await self._fetch([key], _FIELDS)
        codec, mime, data, created, meta = rows[0]
        if codec is None:
            return None
        text = self._open_result(key, codec, mime or b"", data or b"", created, meta or b"")
        if text is None:
            self._refused("results", [key])
            return None
        value = self.codecs.decode(codec.decode(), data, key=key)
        return StoredEntry(
            key,
            value,
            codec.decode(),
            (mime or b"").decode(),
            len(data or b""),
            float(created or 0),
            load_record(text, key),
        )

    async def has_many(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        if not keys:
            return set()
        if self.codecs.signer is not None:  # only an authenticated entry counts as there
            rows = await self._fetch(keys, _FIELDS)
            return {
                key
                for key, (codec, mime, data, created, meta) in zip(keys, rows, strict=True)
                if codec is not None
                and self._open_result(key, codec, mime or b"", data or b"", created, meta or b"")
                is not None
            }

        async def run(r: Any) -> list[int]:
            async with r.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.exists(self._k("r", key))
                return await pipe.execute()

        found = await self._do(run)
        return {key for key, n in zip(keys, found, strict=True) if n}

    async def put_many(
        self, items: Mapping[str, Any], *, meta: Mapping[str, Mapping[str, Any]] | None = None
    ) -> None:
        rows = self._encode_rows(items, meta, time.time())
        if not rows:
            return

        async def run(r: Any) -> None:
            async with r.pipeline(transaction=True) as pipe:
                for key, codec, mime, payload, created, extra in rows:
                    name = self._k("r", key)
                    pipe.hset(
                        name,
                        mapping={
                            "codec": codec,
                            "mime": mime,
                            "data": payload,
                            "created": created,
                            "meta": extra,
                        },
                    )
                    pipe.expire(name, self.ttl)
                await pipe.execute()

        await self._do(run)

    async def delete(self, key: str) -> bool:
        return bool(await self._do(lambda r: r.delete(self._k("r", key))))

    async def _scan(self, pattern: str) -> list[bytes]:
        async def run(r: Any) -> list[bytes]:
            return [k async for k in r.scan_iter(match=pattern, count=1000)]

        return await self._do(run)

    async def keys(self) -> list[str]:
        prefix = f"{self._prefix}:r:"
        names = await self._scan(f"{_escape_glob(self._prefix)}:r:*")
        return [k.decode()[len(prefix) :] for k in names]

    async def clear(self) -> int:
        names = await self._scan(f"{_escape_glob(self._prefix)}:*")
        results = sum(1 for n in names if n.startswith(f"{self._prefix}:r:".encode()))
        runs = sum(1 for n in names if n.startswith(f"{self._prefix}:run:".encode()))
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            await self._do(lambda r, chunk=chunk: r.unlink(*chunk))
        return results + runs

    # --- runs -------------------------------------------------------------------------------

    async def save_run(self, run_id: str, header: Mapping[str, Any]) -> None:
        text = self._seal_run(run_id, json.dumps(dict(header), default=str))

        async def run(r: Any) -> None:
            async with r.pipeline(transaction=True) as pipe:
                pipe.set(self._k("run", run_id), text, ex=self.ttl)
                pipe.zadd(self._k("runs"), {run_id: time.time()})
                pipe.expire(self._k("runs"), self.ttl)
                await pipe.execute()

        await self._do(run)

    async def save_run_tasks(self, run_id: str, entries: Mapping[str, Mapping[str, Any]]) -> None:
        if not entries:
            return
        mapping = {
            tid: self._seal_task(run_id, tid, json.dumps(dict(e), default=str))
            for tid, e in entries.items()
        }

        async def run(r: Any) -> None:
            name = self._k("runtasks", run_id)
            async with r.pipeline(transaction=True) as pipe:
                pipe.hset(name, mapping=mapping)
                pipe.expire(name, self.ttl)
                pipe.zadd(self._k("runs"), {run_id: time.time()}, xx=True)
                pipe.expire(self._k("runs"), self.ttl)
                await pipe.execute()

        await self._do(run)

    async def load_run(self, run_id: str) -> RunRecord | None:
        async def run(r: Any) -> list[Any]:
            async with r.pipeline(transaction=False) as pipe:
                pipe.get(self._k("run", run_id))
                pipe.hgetall(self._k("runtasks", run_id))
                return await pipe.execute()

        header, tasks = await self._do(run)
        if header is None:
            return None
        text = self._open_run_or_raise(run_id, header.decode("utf-8", "replace"))
        entries = ((k.decode(), v.decode("utf-8", "replace")) for k, v in (tasks or {}).items())
        return RunRecord(run_id, load_record(text, run_id), self._open_tasks(run_id, entries))

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        ranked = await self._do(
            lambda r: r.zrevrange(self._k("runs"), 0, max(0, limit - 1), withscores=True)
        )
        if not ranked:
            return []
        ids = [rid.decode() for rid, _ in ranked]
        headers = await self._do(lambda r: r.mget([self._k("run", rid) for rid in ids]))
        out, refused = [], []
        for rid, (_, score), stored in zip(ids, ranked, headers, strict=True):
            if stored is None:
                continue
            text = self._open_run(rid, stored.decode("utf-8", "replace"))
            if text is None:
                refused.append(rid)
            else:
                out.append(summary(rid, load_record(text, rid), score))
        self._refused("run records", refused)
        return out

    async def delete_run(self, run_id: str) -> bool:
        async def run(r: Any) -> list[Any]:
            async with r.pipeline(transaction=True) as pipe:
                pipe.delete(self._k("run", run_id), self._k("runtasks", run_id))
                pipe.zrem(self._k("runs"), run_id)
                return await pipe.execute()

        deleted, _ = await self._do(run)
        return bool(deleted)

    # --- leases ---------------------------------------------------------------------------

    async def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        key = self._k("lease", name)
        ms = max(1, int(ttl * 1000))
        if await self._do(lambda r: r.set(key, owner, nx=True, px=ms)):
            return True
        return bool(await self._do(lambda r: r.eval(_RENEW, 1, key, owner, ms)))

    async def renew_lease(self, name: str, owner: str, ttl: float) -> bool:
        key = self._k("lease", name)
        ms = max(1, int(ttl * 1000))
        return bool(await self._do(lambda r: r.eval(_RENEW, 1, key, owner, ms)))

    async def release_lease(self, name: str, owner: str) -> None:
        await self._do(lambda r: r.eval(_RELEASE, 1, self._k("lease", name), owner))

    async def lease_owner(self, name: str) -> str | None:
        value = await self._do(lambda r: r.get(self._k("lease", name)))
        return value.decode() if value is not None else None

    async def take_over_lease(self, name: str, previous: str, owner: str, ttl: float) -> bool:
        """Give the lease to ``owner`` only if ``previous`` still holds it: of several
        processes taking over from a dead owner, exactly one wins."""
        key = self._k("lease", name)
        ms = max(1, int(ttl * 1000))
        return bool(await self._do(lambda r: r.eval(_TAKE_OVER, 1, key, previous, owner, ms)))

    async def ping(self) -> None:
        await self._do(lambda r: r.ping())

    def shared_url(self) -> str | None:
        query = [("namespace", self.namespace), ("ttl", str(self.ttl)), *self._connection_query]
        return f"{self._raw_url}?{urlencode(query)}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None


_FIELDS = ("codec", "mime", "data", "created", "meta")


class _CredentialsRefused(Exception):
    """Redis refused the password: trying again cannot help."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _retry(backoff: Any, retries: int) -> Any:
    return _retry_class()(backoff, retries)


@functools.cache
def _retry_class() -> type:
    """redis-py's asyncio ``Retry``, except that refused credentials end it at once: they
    are a ``ConnectionError`` to redis-py, which would retry them like a dropped line."""
    from redis.asyncio.retry import Retry  # the asyncio one: the sync Retry never retries
    from redis.exceptions import AuthenticationError

    class NoRetryOnRefusal(Retry):
        async def call_with_retry(self, do: Any, fail: Any, *args: Any, **kwargs: Any) -> Any:
            async def attempt() -> Any:
                try:
                    return await do()
                except AuthenticationError as exc:
                    raise _CredentialsRefused(exc) from None

            return await super().call_with_retry(attempt, fail, *args, **kwargs)

    return NoRetryOnRefusal


def _encode_namespace(namespace: str) -> str:
    """The namespace as written in key names: no ':' (the separator) and so no way for one
    namespace's keys to fall under another's prefix. Injective: '%' is encoded too."""
    return namespace.replace("%", "%25").replace(":", "%3A")


def _check_connection_options(options: list[tuple[str, str]], shown: str) -> None:
    """Refuse query parameters redis-py would not use, naming them (never their values)."""
    from redis.asyncio.connection import URL_QUERY_ARGUMENT_PARSERS

    known = set(URL_QUERY_ARGUMENT_PARSERS) | {"password", "username", "client_name"}
    unknown = sorted({name for name, _ in options if name not in known})
    if unknown:
        raise ConfigError(
            f"unknown option(s) {', '.join(unknown)} in the Redis store URL {shown}: use "
            "namespace, ttl, password, username, db or another redis-py connection option"
        )


def _secrets_of(url: str) -> list[str]:
    """Every secret in a URL (the netloc password, secret query values), longest first, in
    the forms an error message might quote them."""
    from urllib.parse import unquote, urlsplit

    from ._url import is_secret_param

    found: set[str] = set()
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return []
    if password:
        found |= {password, unquote(password)}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if value and is_secret_param(name):
            found.add(value)
    return sorted(found, key=len, reverse=True)


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
