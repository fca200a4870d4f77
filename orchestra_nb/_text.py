"""Small text helpers for everything that shows user-, model- or store-written text.

Such text is untrusted: a goal or an error message may carry terminal control
sequences (``ESC ] 0 ; title BEL`` retitles a terminal, ``ESC [ 2 J`` clears it)
or C1 control characters that some terminals obey. ``printable`` shows every
control character as a visible ``\\u001b``-style escape, so it is seen, never
executed; the escape is also valid inside a JSON string, so JSON stays JSON.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls except tab and newline, DEL, and the C1 range
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# the same, letting carriage returns through: progress bars redraw their line with them
_CONTROL_BUT_CR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def shorten(text: str | None, limit: int = 80) -> str:
    """``text`` for display on one line: whitespace collapsed, control characters shown
    as escapes (see ``printable``), cut to ``limit`` characters with "…"."""
    one_line = printable(text or "", one_line=True)
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def first_line(obj: Any) -> str:
    """The first line of an object's docstring (a function's summary), or ""."""
    lines = (getattr(obj, "__doc__", None) or "").strip().splitlines()
    return lines[0].strip() if lines else ""


def _visible(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def printable(text: object, *, one_line: bool = False) -> str:
    """``text`` with its control characters shown as ``\\uXXXX`` escapes.

    ``one_line=True`` also folds every run of whitespace (newlines included)
    into one space, for values shown inside a line of their own.
    """
    value = str(text)
    if one_line:
        value = " ".join(value.split())
    return _CONTROL.sub(_visible, value)


def terminal_safe(text: str) -> str:
    """Like ``printable`` but keeps carriage returns (for a stream a progress bar writes to)."""
    return _CONTROL_BUT_CR.sub(_visible, text)


def error_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line for display (``_errors.one_line``), cut to ``limit``."""
    from ._errors import one_line

    return shorten(one_line(exc), limit)
