"""Text from LLM answers and shared stores, made safe to print on a terminal or draw.

Such text is untrusted: a goal or an error message may carry terminal control
sequences (``ESC ] 0 ; title BEL`` retitles a terminal, ``ESC [ 2 J`` clears it)
or C1 control characters that some terminals obey. ``printable`` shows every
control character as a visible ``\\u001b``-style escape, so it is seen, never
executed; the escape is also valid inside a JSON string, so JSON stays JSON.
"""

from __future__ import annotations

import re

# C0 controls except tab and newline, DEL, and the C1 range
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# the same, letting carriage returns through: progress bars redraw their line with them
_CONTROL_BUT_CR = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


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
