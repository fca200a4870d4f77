"""Store URLs: parsing, defaults, and the redacted form that is safe to print.

A secret can sit in two places of a URL: the password of ``user:password@host``
and a query parameter such as ``?password=``. ``redact`` hides both; every
message, repr and listing shows the redacted form only.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit, urlunsplit

from .._errors import ConfigError

DEFAULT_URL = "sqlite:///.orchestra/results.db"
SCHEMES = ("memory", "sqlite", "redis", "rediss")


def default_url() -> str:
    return os.environ.get("ORCHESTRA_STORE") or DEFAULT_URL


def is_secret_param(name: str) -> bool:
    """Whether a URL query parameter holds a secret (a password, a token, a key)."""
    name = name.lower()
    return any(word in name for word in ("pass", "secret", "token", "pwd")) or name in (
        "key",
        "apikey",
        "api_key",
        "auth",
    )


def redact(url: str) -> str:
    """The URL with any password (in the netloc or the query) replaced by ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
        port = parts.port
    except ValueError:
        return "<unparsable store URL>"
    base, sep, rest = url.partition("?")
    if password is not None:
        user = parts.username or ""
        host = parts.hostname or ""
        if port:
            host = f"{host}:{port}"
        base = urlunsplit(parts._replace(netloc=f"{user}:***@{host}", query="", fragment=""))
    query, hash_sign, fragment = rest.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(is_secret_param(k) for k, _ in pairs):
        query = urlencode([(k, "***" if is_secret_param(k) else v) for k, v in pairs], safe="*")
    return f"{base}{sep}{query}{hash_sign}{fragment}"


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


def parse_size(text: str, *, what: str) -> int:
    """Bytes from ``4096``, ``512k``, ``10MB``, ``1g`` (powers of 1024)."""
    import re

    match = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?\s*", text.lower())
    if match is None or int(match.group(1)) <= 0:
        raise ConfigError(f"{what}={text!r} is not a size: use bytes, or a number with k, M or G")
    return int(match.group(1)) * 1024 ** " kmg".index(match.group(2) or " ")
