"""Reaching around the store API, as someone with direct access to the database would."""

from __future__ import annotations

import sqlite3
from urllib.parse import parse_qs, urlsplit


def _sqlite_path(url: str) -> str:
    return url.split(":///", 1)[1].split("?", 1)[0]


def _redis(url: str):
    import redis

    return redis.Redis.from_url(url.split("?", 1)[0])


def _namespace(url: str) -> str:
    return parse_qs(urlsplit(url).query).get("namespace", ["orchestra"])[0]


def result_fields(url: str, key: str) -> dict[str, bytes | str | float]:
    """The stored fields of one result: codec, mime, data, created, meta."""
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            row = conn.execute(
                "SELECT codec, mime, data, created, meta FROM results WHERE ns=? AND key=?",
                (_namespace(url), key),
            ).fetchone()
        return dict(zip(("codec", "mime", "data", "created", "meta"), row, strict=True))
    client = _redis(url)
    try:
        raw = client.hgetall(f"{_namespace(url)}:r:{key}")
    finally:
        client.close()
    return {k.decode(): v for k, v in raw.items()}


def write_result_fields(url: str, key: str, fields: dict[str, bytes | str | float]) -> None:
    """Overwrite (or create) one result's stored fields."""
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            current = conn.execute(
                "SELECT codec, mime, data, created, meta FROM results WHERE ns=? AND key=?",
                (_namespace(url), key),
            ).fetchone() or ("text", "text/plain", b"", 0.0, "{}")
            row = dict(zip(("codec", "mime", "data", "created", "meta"), current, strict=True))
            row.update(fields)
            conn.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_namespace(url), key, row["codec"], row["mime"], row["data"], row["created"],
                 row["meta"]),
            )  # fmt: skip
        return
    client = _redis(url)
    try:
        name = f"{_namespace(url)}:r:{key}"
        client.hset(name, mapping=fields)
        client.expire(name, 600)
    finally:
        client.close()


def copy_result(url: str, source: str, target: str) -> None:
    """Put a stored result, exactly as stored, under another key."""
    write_result_fields(url, target, result_fields(url, source))


def run_header(url: str, run_id: str) -> str:
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            return conn.execute(
                "SELECT header FROM runs WHERE ns=? AND run_id=?", (_namespace(url), run_id)
            ).fetchone()[0]
    client = _redis(url)
    try:
        return client.get(f"{_namespace(url)}:run:{run_id}").decode()
    finally:
        client.close()


def write_run_header(url: str, run_id: str, text: str) -> None:
    if url.startswith("sqlite"):
        with sqlite3.connect(_sqlite_path(url)) as conn:
            conn.execute(
                "UPDATE runs SET header=? WHERE ns=? AND run_id=?", (text, _namespace(url), run_id)
            )
        return
    client = _redis(url)
    try:
        client.set(f"{_namespace(url)}:run:{run_id}", text, ex=600)
    finally:
        client.close()
