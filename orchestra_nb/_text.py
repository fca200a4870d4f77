"""Small text helpers shared by everything that shows user- or model-written text."""

from __future__ import annotations

from typing import Any


def shorten(text: str | None, limit: int = 80) -> str:
    """``text`` on one line (whitespace collapsed), cut to ``limit`` characters with "…"."""
    one_line = " ".join((text or "").split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def first_line(obj: Any) -> str:
    """The first line of an object's docstring (a function's summary), or ""."""
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def error_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line for a user: the project's own errors say what to do as they
    are; anything else is prefixed with its type (``ValueError: ...``)."""
    from ._errors import OrchestraError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, OrchestraError):
        text = f"{type(exc).__name__}: {text}"
    return shorten(text, limit)
