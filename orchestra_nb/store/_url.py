"""Store URLs: parsing, defaults, and the redacted form that is safe to print."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

from .._errors import ConfigError

DEFAULT_URL = "sqlite:///.orchestra/results.db"
SCHEMES = ("memory", "sqlite", "redis", "rediss")


def default_url() -> str:
    return os.environ.get("ORCHESTRA_STORE") or DEFAULT_URL


def redact(url: str) -> str:
    """The URL with any password replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable store URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def scheme_of(url: str) -> str:
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported store URL {redact(url)!r}: use memory://, sqlite:///path/to/file.db "
            "or redis://host:6379/0"
        )
    return scheme


def query_options(url: str) -> dict[str, str]:
    query = urlsplit(url).query
    return {k: v[-1] for k, v in parse_qs(query).items()}


def sqlite_path(url: str) -> Path:
    """sqlite:///relative/path.db and sqlite:////absolute/path.db (SQLAlchemy style)."""
    rest = url.split("://", 1)[1].split("?", 1)[0]
    if not rest.startswith("/"):
        raise ConfigError(f"SQLite URLs look like sqlite:///path/to/file.db, not {url!r}")
    path = rest[1:]
    if not path:
        raise ConfigError(f"the SQLite URL {url!r} names no file")
    return Path(path)
