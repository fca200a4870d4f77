"""JSON the way language models write it, read in one linear pass, incrementally and bounded.

``JSONScanner`` is fed text (all at once or chunk by chunk as a model streams
it) and builds every JSON value it finds, with the prose around them skipped.
Each character is looked at once: feeding a plan in a thousand chunks costs
what feeding it whole does, and ``on_close`` reports each object or list the
moment its closing bracket arrives (the plan stream builds on that).

What models get wrong and is read anyway: prose and Markdown fences around the
JSON, single-quoted strings, unquoted keys and words, Python's ``True``/``None``,
trailing or missing commas, comments, raw newlines and unescaped quotes inside
strings, a missing ``}`` before the next object, and stray closing brackets.
What is *not* mended: text that ends while a value is still open. That is what
an answer cut off by the model's token limit looks like, and closing it would
silently drop whatever the model had not written yet; the scan reports it
(``Scan.open``) and the caller decides.

Why not ``json_repair``: it mends by closing what is open (so a cut answer
loses tasks without a word), its worst cases are quadratic (16 KB of unquoted
keys take seconds, 36 KB of ``{`` take ten), and it cannot be fed a stream.
Bounds: ``max_chars`` and ``max_depth`` are checked as text arrives, so a
hostile answer costs at most one pass over ``max_chars`` characters.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_DEPTH = 64  # a plan nests about five levels; JSON parsers recurse per level
MAX_ANSWER_CHARS = 1_000_000  # about 250k tokens: more than any model writes in one answer
# text that is not strict JSON is read (mended) up to this size from its first bracket: the
# scan is linear, but a flood of brackets costs a few microseconds each
MAX_REPAIR_CHARS = 256_000


class LimitExceeded(ValueError):
    """The text is larger or deeper than the limit it is read under (the message names it)."""


def size_error(what: str, size: int, limit: int, setting: str) -> LimitExceeded:
    return LimitExceeded(
        f"{what} is {_amount(size)}, more than the {_amount(limit)} limit ({setting})"
    )


def _amount(chars: int) -> str:
    if chars >= 1_000_000:
        return f"{chars / 1e6:.1f} MB"
    if chars >= 10_000:
        return f"{chars / 1e3:.0f} KB"
    return f"{chars} characters"


# --- values -----------------------------------------------------------------------------

_KEY, _COLON, _VALUE, _AFTER = range(4)  # where an object is between its entries
_SCALARS = {"true": True, "false": False, "null": None, "True": True, "False": False,
            "None": None, "undefined": None}  # fmt: skip
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\",
            '"': '"', "'": "'"}  # fmt: skip


def _string_value(raw: str, quote: str) -> str:
    if quote == '"' and "\\" not in raw and '"' not in raw:
        return raw
    if quote == '"':
        try:
            return json.loads(f'"{raw}"', strict=False)
        except ValueError:
            pass  # an unescaped quote or a bad escape: decode by hand below

    def unescape(match: re.Match[str]) -> str:
        code = match.group(1)
        if len(code) == 5:
            return chr(int(code[1:], 16))
        return _ESCAPES.get(code, match.group(0))

    return _ESCAPE.sub(unescape, raw)


def _bare_value(text: str) -> Any:
    if text in _SCALARS:
        return _SCALARS[text]
    if _NUMBER.fullmatch(text):
        return json.loads(text)
    return text  # an unquoted word: models write {id: task_1}


# --- the scanner ------------------------------------------------------------------------


class _Frame:
    """An object or list being read."""

    __slots__ = ("is_object", "key", "mended", "slot", "start", "state", "value")

    def __init__(self, is_object: bool, start: int, slot: Any) -> None:
        self.is_object = is_object
        self.value: Any = {} if is_object else []
        self.start = start
        self.slot = slot  # the key or index this value has in its parent
        self.state = _KEY if is_object else _VALUE
        self.key: Any = None
        self.mended = False


@dataclass
class TopValue:
    """One JSON value found at the top level of the text (prose around it skipped)."""

    value: Any
    start: int
    end: int
    mended: bool  # a bracket the model left out was put back in it


@dataclass
class Scan:
    """What a finished scan found."""

    values: list[TopValue] = field(default_factory=list)
    open: Any = None  # the partly read top-level value when the text ends inside one
    open_start: int = -1
    open_ids: set[int] = field(default_factory=set)  # id() of the values still open in it
    stray_closers: list[int] = field(default_factory=list)


# one token inside a container: a bracket or separator, a quote, or a bare word
_WORD = r"""[^"'{}\[\]:,\s]+"""
_TOKEN = re.compile(rf"""[ \t\r\n]*(?:([{{}}\[\]:,])|(["'])|({_WORD}))""")
_TOP = re.compile(r"[{}\[\]]")
_STRING_END = {'"': re.compile(r'["\\]'), "'": re.compile(r"['\\]")}
_SPACE = re.compile(r"[ \t\r\n]*")
_AFTER_STRING = frozenset(",:}]")
_WORD_CHAR = re.compile(r"""[^"'{}\[\]:,\s]""")
_WORD_REST = re.compile(rf"""(?:{_WORD})?(?:[ \t]+(?!//|/\*){_WORD})*""")
_BLANK = re.compile(r"[ \t]*")


def _goes_on(buf: str, at: int) -> bool:
    """Whether an unquoted word goes on at ``at`` (after spaces): a word, not a comment."""
    return _WORD_CHAR.match(buf, at) is not None and not buf.startswith(("//", "/*"), at)


def _ends_string(buf: str, ahead: int, spaces: str) -> bool:
    """Whether a quote followed by ``spaces`` and then ``buf[ahead]`` closes its string."""
    return ahead >= len(buf) or buf[ahead] in _AFTER_STRING or "\n" in spaces


OnClose = Callable[[tuple[Any, ...], Any, tuple[Any, ...]], None]


class JSONScanner:
    """Reads JSON values out of text fed in pieces; one pass, bounded size and depth.

    ``feed(text)`` as often as text arrives, then ``finish()`` for the ``Scan``.
    ``on_close(path, value, parents)`` is called as each object or list is
    complete; ``path`` starts with the index of the top-level value, then the
    keys and list indices down to it, and ``parents`` are the (still open)
    values that hold it, outermost first.
    """

    def __init__(
        self,
        *,
        max_chars: int = MAX_ANSWER_CHARS,
        max_depth: int = MAX_DEPTH,
        what: str = "the answer",
        setting: str = "MAX_ANSWER_CHARS",
        on_close: OnClose | None = None,
    ) -> None:
        self.max_chars = max_chars
        self.max_depth = max_depth
        self.what = what
        self.setting = setting
        self.on_close = on_close
        self.result = Scan()
        self.total = 0
        self._buf = ""
        self._pos = 0
        self._base = 0  # offset of _buf[0] in the whole text
        self._stack: list[_Frame] = []
        # a token split between chunks: a string (its quote, the parts read, a quote that may
        # end it), an unquoted word (its parts, spaces that may end it), or a closing bracket
        # that does not fit and waits to see what follows it
        self._string: tuple[str, list[str], list[str]] | None = None
        self._word: tuple[list[str], list[str]] | None = None
        self._closer: tuple[str, int] | None = None
        self._comment: str | None = None  # "\n" or "*/": what ends the comment being skipped
        self._finished = False

    # --- feeding ------------------------------------------------------------------------

    def feed(self, text: str) -> None:
        if self._finished:
            raise RuntimeError("the scan is finished")
        self.total += len(text)
        if self.total > self.max_chars:
            raise size_error(self.what, self.total, self.max_chars, self.setting)
        # keep only what is not consumed yet (a token split between chunks): linear overall
        self._buf = self._buf[self._pos :] + text
        self._base += self._pos
        self._pos = 0
        self._run(final=False)

    def finish(self) -> Scan:
        """End of text: complete what can be completed and report what is still open."""
        if not self._finished:
            self._run(final=True)
            self._finished = True
            stack = self._stack
            if stack:
                # the partial tree, for saying how far the text got; the open values are
                # marked so nobody counts them as complete
                for parent, child in itertools.pairwise(stack):
                    if parent.is_object:
                        parent.value[child.slot] = child.value
                    else:
                        parent.value.append(child.value)
                self.result.open = stack[0].value
                self.result.open_start = stack[0].start
                self.result.open_ids = {id(f.value) for f in stack}
        return self.result

    @property
    def depth(self) -> int:
        return len(self._stack)

    # --- the loop -----------------------------------------------------------------------

    def _run(self, *, final: bool) -> None:
        buf = self._buf
        n = len(buf)
        pos = self._pos
        while pos < n or (final and self._waiting()):
            # a token split between chunks goes on where the last chunk stopped
            if self._string is not None:
                pos = self._read_string(buf, pos, final)
                if self._string is not None:
                    break
                continue
            if self._word is not None:
                pos = self._read_word(buf, pos, final)
                if self._word is not None:
                    break
                continue
            if self._closer is not None:
                ahead = _SPACE.match(buf, pos).end()
                if ahead >= n and not final:
                    pos = n
                    break
                punct, at = self._closer
                self._closer = None
                self._mismatched(punct, at, buf[ahead : ahead + 1])
                pos = ahead
                continue
            if self._comment is not None:
                end = buf.find(self._comment, pos)
                if end < 0:
                    pos = n if final or self._comment == "\n" else max(pos, n - 1)
                    if final:
                        self._comment = None
                    break
                pos = end + len(self._comment)
                self._comment = None
                continue
            if not self._stack:
                match = _TOP.search(buf, pos)
                if match is None:
                    pos = n
                    break
                char, pos = match.group(), match.start()
                if char in "{[":
                    self._open(char == "{", pos)
                else:
                    self.result.stray_closers.append(self._base + pos)
                pos += 1
                continue
            match = _TOKEN.match(buf, pos)
            if match is None or match.end() == pos:  # only whitespace is left
                pos = n
                break
            punct, quote, word = match.groups()
            if punct is not None:
                pos = match.end()
                if punct in "}]" and not self._closer_fits(punct):
                    # whether this closer is stray depends on what follows it
                    self._closer = (punct, self._base + match.start(1))
                else:
                    self._punctuation(punct, match.start(1))
            elif quote is not None:
                self._string = (quote, [], [])
                pos = match.end()
            elif word == "/" and match.end() >= n and not final:
                break  # a comment may start with the next chunk
            elif word.startswith("//") or word.startswith("/*"):
                self._comment = "\n" if word[1] == "/" else "*/"
                pos = match.start(3) + 2
            else:
                self._word = ([], [])
                pos = match.start(3)
        self._pos = pos

    def _waiting(self) -> bool:
        return self._string is not None or self._word is not None or self._closer is not None

    def _read_string(self, buf: str, pos: int, final: bool) -> int:
        """Read on in the current string from ``pos``; return where reading stopped.

        A quote ends the string only where JSON may go on (a comma, colon or
        closing bracket follows, or the line ends): models leave inner quotes
        unescaped ("write a "catchy" title"), and those are followed by more words.
        When a chunk ends before that can be told, the quote and the spaces after
        it wait in ``pending``, so nothing is scanned twice.
        """
        quote, parts, pending = self._string  # type: ignore[misc]
        n = len(buf)
        if pending:
            ahead = _SPACE.match(buf, pos).end()
            pending.append(buf[pos:ahead])
            if ahead >= n and not final:
                return n
            if _ends_string(buf, ahead, "".join(pending)[1:]):
                return self._end_string(ahead)
            parts.append("".join(pending))  # an inner quote: part of the text
            self._string = (quote, parts, [])
            pos = ahead
        ender = _STRING_END[quote]
        search = pos
        while True:
            match = ender.search(buf, search)
            if match is None:
                if not final:
                    parts.append(buf[pos:n])
                return n  # (at the end of the text the string stays open)
            if match.group() == "\\":
                if match.end() >= n and not final:
                    parts.append(buf[pos : match.start()])
                    return match.start()  # the escaped character is not here yet
                search = match.end() + 1
                continue
            at, after = match.start(), match.end()
            ahead = _SPACE.match(buf, after).end()
            if ahead >= n and not final:
                parts.append(buf[pos:at])
                self._string = (quote, parts, [buf[at:n]])
                return n
            if _ends_string(buf, ahead, buf[after:ahead]):
                parts.append(buf[pos:at])
                return self._end_string(ahead)
            search = after

    def _end_string(self, resume: int) -> int:
        quote, parts, _pending = self._string  # type: ignore[misc]
        self._string = None
        self._deliver(_string_value("".join(parts), quote), scalar=True)
        return resume

    def _read_word(self, buf: str, pos: int, final: bool) -> int:
        """Read on in an unquoted word (``true``, ``12``, ``id``, ``Write the report``).

        Spaces inside a word belong to it; spaces at the end of a chunk wait in
        ``pending`` until the next chunk says whether the word goes on.
        """
        parts, pending = self._word  # type: ignore[misc]
        n = len(buf)
        if pending:
            ahead = _BLANK.match(buf, pos).end()
            if (ahead >= n or (buf[ahead] == "/" and ahead + 1 >= n)) and not final:
                pending.append(buf[pos:n])
                return n  # what follows the spaces is not here yet
            if not _goes_on(buf, ahead):
                return self._end_word(pos)
            parts.append("".join(pending) + buf[pos:ahead])
            pos = ahead
        end = _WORD_REST.match(buf, pos).end()
        parts.append(buf[pos:end])
        if end >= n and not final:
            self._word = (parts, [])
            return n
        blank = _BLANK.match(buf, end).end()
        if (blank >= n or (buf[blank] == "/" and blank + 1 >= n)) and not final:
            self._word = (parts, [buf[end:n]])
            return n
        return self._end_word(end)

    def _end_word(self, resume: int) -> int:
        parts, _pending = self._word  # type: ignore[misc]
        self._word = None
        self._take_word("".join(parts))
        return resume

    # --- tokens -------------------------------------------------------------------------

    def _open(self, is_object: bool, pos: int) -> None:
        if len(self._stack) >= self.max_depth:
            raise LimitExceeded(
                f"{self.what} nests JSON more than {self.max_depth} levels deep "
                f"(the limit is MAX_DEPTH = {self.max_depth})"
            )
        parent = self._stack[-1] if self._stack else None
        if parent is None:
            slot: Any = len(self.result.values)
        elif parent.is_object:
            if parent.state in (_KEY, _AFTER):
                # an object where a key belongs: the one before it was not closed
                self._close_implicitly()
                self._open(is_object, pos)
                return
            slot = parent.key
        else:
            slot = len(parent.value)
        self._stack.append(_Frame(is_object, self._base + pos, slot))

    def _punctuation(self, char: str, pos: int) -> None:
        frame = self._stack[-1]
        if char == ",":
            if frame.is_object:
                if frame.state == _COLON or frame.state == _VALUE:
                    frame.value[frame.key] = None  # a key without a value
                frame.state = _KEY
            else:
                frame.state = _VALUE
        elif char == ":":
            if frame.is_object and frame.state == _COLON:
                frame.state = _VALUE
        elif char in "{[":
            self._open(char == "{", pos)
        else:
            self._close(self._base + pos + 1)

    def _closer_fits(self, char: str) -> bool:
        return self._stack[-1].is_object == (char == "}")

    def _mismatched(self, char: str, at: int, following: str) -> None:
        wanted = char == "}"
        below = any(f.is_object == wanted for f in self._stack[:-1])
        if not below or following == ",":
            # nothing to close, or the list goes on after it: a stray bracket
            self.result.stray_closers.append(at)
            return
        while self._stack[-1].is_object != wanted:
            self._close_implicitly()
        self._close(at + 1)

    def _take_word(self, word: str) -> None:
        frame = self._stack[-1]
        if frame.is_object and frame.state in (_KEY, _AFTER):
            frame.key, frame.state = word, _COLON  # an unquoted key
            return
        self._deliver(_bare_value(word), scalar=True)

    def _deliver(self, value: Any, *, scalar: bool) -> None:
        """Put a finished value where the innermost open container expects one."""
        frame = self._stack[-1]
        if not frame.is_object:
            frame.value.append(value)
            frame.state = _AFTER
        elif frame.state in (_KEY, _AFTER) and scalar:
            frame.key = value if isinstance(value, str) else json.dumps(value)
            frame.state = _COLON
        else:
            frame.value[frame.key] = value
            frame.state = _AFTER

    def _close(self, end: int) -> None:
        """Close the innermost value; ``end`` is where it ends in the text (-1: implicitly)."""
        frame = self._stack.pop()
        if frame.is_object and frame.state in (_COLON, _VALUE):
            frame.value[frame.key] = None
        self._finish_frame(frame, end)

    def _close_implicitly(self) -> None:
        frame = self._stack[-1]
        frame.mended = True
        self._close(-1)

    def _finish_frame(self, frame: _Frame, end: int) -> None:
        if self.on_close is not None:
            path = (*(f.slot for f in self._stack), frame.slot)
            self.on_close(path, frame.value, tuple(f.value for f in self._stack))
        if self._stack:
            parent = self._stack[-1]
            parent.mended = parent.mended or frame.mended
            self._deliver(frame.value, scalar=False)
        else:
            self.result.values.append(TopValue(frame.value, frame.start, end, frame.mended))


def scan_text(
    text: str,
    *,
    max_chars: int = MAX_ANSWER_CHARS,
    max_depth: int = MAX_DEPTH,
    what: str = "the answer",
    setting: str = "MAX_ANSWER_CHARS",
) -> Scan:
    """Every JSON value in ``text``, read in one pass (raises LimitExceeded past the limits)."""
    scanner = JSONScanner(max_chars=max_chars, max_depth=max_depth, what=what, setting=setting)
    scanner.feed(text)
    return scanner.finish()


def check_depth(value: Any, *, max_depth: int = MAX_DEPTH, what: str = "the plan") -> None:
    """Refuse a Python value nested deeper than ``max_depth`` (iteratively: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth > max_depth:
                raise LimitExceeded(
                    f"{what} nests more than {max_depth} levels deep "
                    f"(the limit is MAX_DEPTH = {max_depth})"
                )
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def loads(text: str, *, max_chars: int = MAX_ANSWER_CHARS, max_depth: int = MAX_DEPTH) -> Any:
    """The first non-empty JSON object or list in an answer, or None (prose, cut off, too big).

    Strict JSON is read by the standard library; anything else by one scan, when it
    is at most ``MAX_REPAIR_CHARS`` long from its first bracket.
    """
    if len(text) > max_chars:
        return None
    stripped = text.strip()
    if stripped[:1] in ("{", "["):
        try:
            value = json.loads(stripped)
        except (ValueError, RecursionError):
            pass
        else:
            try:
                check_depth(value, max_depth=max_depth)
            except LimitExceeded:
                return None
            return value if value else None
    brackets = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    if not brackets or len(text) - min(brackets) > MAX_REPAIR_CHARS:
        return None
    try:
        scan = scan_text(text, max_chars=max_chars, max_depth=max_depth)
    except LimitExceeded:
        return None
    if scan.open is not None:
        return None  # cut off: what is there is not the whole answer
    return next((v.value for v in scan.values if v.value), None)
