"""Authenticating stored entries with the store's signing key.

A shared store (a team's Redis, a SQLite file on a shared disk) accepts writes
from anyone who can reach it, and cache keys are predictable content hashes: a
planted value under a plan's key would be taken as that task's cached result.
With a signing key, every entry this package writes carries an HMAC-SHA256 tag
over everything a reader acts on, and a reader holding the key refuses entries
whose tag is missing or wrong:

* a result: its cache key, codec, mime type, creation time, meta data and
  payload (so a valid value cannot be moved under another key, or relabelled);
* a run header: the run id and its JSON text;
* a task entry of a run: the run id, the task id and its JSON text.

The tag rides in front of the entry's JSON text (``hmac-sha256:<hex>\\n`` then
the JSON) so no backend needs another column; JSON text never starts that way,
so signed and unsigned entries cannot be confused. Fields are framed with their
lengths before hashing, so no two different entries hash the same bytes.

The key used here is derived from the signing key for this one purpose; the
signature of pickled payloads (``_codecs``) uses the signing key itself.
"""

from __future__ import annotations

import hashlib
import hmac

PREFIX = "hmac-sha256:"
_DOMAIN = b"orchestra-nb stored entry v1"
_HEX_LEN = 64


class EntrySigner:
    """Tags and checks entries for one signing key; the key itself is never exposed."""

    __slots__ = ("_key",)

    def __init__(self, signing_key: bytes) -> None:
        self._key = hmac.new(signing_key, _DOMAIN, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return "EntrySigner(<key hidden>)"

    def tag(self, kind: str, *fields: str | bytes) -> str:
        """The hex HMAC of one entry: ``kind`` ("result", "run", "task") and its fields."""
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in (kind, *fields):
            data = part.encode() if isinstance(part, str) else bytes(part)
            mac.update(len(data).to_bytes(8, "big"))
            mac.update(data)
        return mac.hexdigest()

    def seal(self, text: str, kind: str, *fields: str | bytes) -> str:
        """``text`` with the tag of (kind, *fields, text) in front."""
        return f"{PREFIX}{self.tag(kind, *fields, text)}\n{text}"

    def open(self, stored: str, kind: str, *fields: str | bytes) -> str | None:
        """The text of a sealed entry whose tag checks out; None for unsigned or forged."""
        tag, text = split(stored)
        if tag is None:
            return None
        expected = self.tag(kind, *fields, text)
        return text if hmac.compare_digest(tag, expected) else None


def split(stored: str) -> tuple[str | None, str]:
    """(tag, text) of a stored entry; the tag is None when the entry carries none."""
    if not stored.startswith(PREFIX):
        return None, stored
    head, sep, text = stored[len(PREFIX) :].partition("\n")
    if not sep or len(head) != _HEX_LEN:
        return "", text  # a malformed tag: never valid, never mistaken for JSON
    return head, text
