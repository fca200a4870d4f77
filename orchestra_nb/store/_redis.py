"""A shared store on Redis: results and run records any kernel or worker can see.

Every key this store writes carries a TTL (24 h unless ``?ttl=`` says otherwise),
set in the same MULTI as the write. Keys live under a namespace:
``{ns}:r:{key}`` (a hash: codec, mime, data, created, meta), ``{ns}:run:{id}``
(the header), ``{ns}:runtasks:{id}`` (a hash of task entries), ``{ns}:runs`` (a
sorted set by update time) and ``{ns}:lease:{name}``.

The client connects lazily on the running loop and reconnects when used from a
later loop (notebooks and scripts do that). Connection errors are retried a few
times with exponential backoff by redis-py itself, then reported as a
``StoreUnavailableError`` naming the URL without its password — within seconds,
never a hang.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._errors import StoreUnavailableError
from ._base import DEFAULT_NAMESPACE, RunRecord, StoreBase, StoredEntry, summary
from ._codecs import Codecs
from ._url import query_options, redact

DEFAULT_TTL = 24 * 3600

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


class RedisStore(StoreBase):
    def __init__(
        self,
        url: str,
        *,
        codecs: Codecs | None = None,
        namespace: str | None = None,
        ttl: float | None = None,
    ) -> None:
        options = query_options(url)
        self._raw_url = url.split("?", 1)[0]
        self.url = redact(url)
        self.namespace = namespace or options.get("namespace") or DEFAULT_NAMESPACE
        self.ttl = int(ttl if ttl is not None else float(options.get("ttl", DEFAULT_TTL)))
        if self.ttl <= 0:
            raise ValueError(f"ttl must be positive seconds, not {self.ttl}")
        self.codecs = codecs or Codecs()
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._password = _password_of(url)

    # --- connection -------------------------------------------------------------------

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis
            from redis.backoff import ExponentialBackoff
            from redis.exceptions import ConnectionError as RedisConnectionError
            from redis.exceptions import TimeoutError as RedisTimeoutError
            from redis.retry import Retry

            self._client = aioredis.Redis.from_url(
                self._raw_url,
                socket_connect_timeout=2,
                socket_timeout=10,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
                health_check_interval=30,
            )
            self._loop = loop
        return self._client

    async def _do(self, coro_factory: Any) -> Any:
        """Run one command (or pipeline); connection trouble becomes StoreUnavailableError."""
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        try:
            return await coro_factory(self._redis())
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if self._password:
                reason = reason.replace(self._password, "***")
            raise StoreUnavailableError(f"cannot reach Redis at {self.url}: {reason}") from None

    def _k(self, kind: str, name: str = "") -> str:
        return f"{self.namespace}:{kind}:{name}" if name else f"{self.namespace}:{kind}"

    # --- results ------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        rows = await self._fetch(keys, ("codec", "data"))
        return {
            key: self.codecs.decode(codec.decode(), data, key=key)
            for key, (codec, data) in zip(keys, rows, strict=True)
            if codec is not None
        }

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
        rows = await self._fetch([key], ("codec", "mime", "data", "created", "meta"))
        codec, mime, data, created, meta = rows[0]
        if codec is None:
            return None
        value = self.codecs.decode(codec.decode(), data, key=key)
        return StoredEntry(
            key, value, codec.decode(), mime.decode(), len(data), float(created), json.loads(meta)
        )

    async def has_many(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        if not keys:
            return set()

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
        prefix = f"{self.namespace}:r:"
        names = await self._scan(f"{_escape_glob(self.namespace)}:r:*")
        return [k.decode()[len(prefix) :] for k in names]

    async def clear(self) -> int:
        names = await self._scan(f"{_escape_glob(self.namespace)}:*")
        results = sum(1 for n in names if n.startswith(f"{self.namespace}:r:".encode()))
        runs = sum(1 for n in names if n.startswith(f"{self.namespace}:run:".encode()))
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            await self._do(lambda r, chunk=chunk: r.unlink(*chunk))
        return results + runs

    # --- runs -------------------------------------------------------------------------------

    async def save_run(self, run_id: str, header: Mapping[str, Any]) -> None:
        text = json.dumps(dict(header), default=str)

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
        mapping = {tid: json.dumps(dict(e), default=str) for tid, e in entries.items()}

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
        return RunRecord(
            run_id,
            json.loads(header),
            {k.decode(): json.loads(v) for k, v in (tasks or {}).items()},
        )

    async def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        ranked = await self._do(
            lambda r: r.zrevrange(self._k("runs"), 0, max(0, limit - 1), withscores=True)
        )
        if not ranked:
            return []
        ids = [rid.decode() for rid, _ in ranked]
        headers = await self._do(lambda r: r.mget([self._k("run", rid) for rid in ids]))
        return [
            summary(rid, json.loads(h), score)
            for rid, (_, score), h in zip(ids, ranked, headers, strict=True)
            if h is not None
        ]

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

    async def ping(self) -> None:
        await self._do(lambda r: r.ping())

    def shared_url(self) -> str | None:
        return f"{self._raw_url}?namespace={self.namespace}&ttl={self.ttl}"

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None and self._loop is asyncio.get_running_loop():
            await client.aclose()
        self._loop = None


def _password_of(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    password = urlsplit(url).password
    return unquote(password) if password else None


def _escape_glob(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
