"""Counting a prompt's tokens the way the model will, offline.

OpenAI models are counted with their own tokenizer: ``tiktoken`` with the BPE
ranks of ``o200k_base`` (gpt-4o, gpt-4.1, gpt-5, o-series) or ``cl100k_base``
(gpt-4, gpt-3.5-turbo). tiktoken downloads those files on first use, which a
machine without internet access (or CI) cannot do, so the package ships them in
``orchestra_nb/data/`` (gzip, 2.4 MB) and checks each against the SHA-256 that
tiktoken itself expects of OpenAI's file before using it. Nothing is fetched.

Other models (Llama, Mistral... behind Ollama or vLLM) have tokenizers we do not
ship: their prompts are counted with ``o200k_base`` too and the count is marked
approximate (``Tokenizer.exact`` is False); modern tokenizers land within about
a fifth of it. Without tiktoken installed at all, the fallback is four
characters a token.

A chat request costs a few tokens beyond its text: OpenAI's documented rule for
these models is 3 per message plus 3 that prime the reply (``MESSAGE_TOKENS``,
``REPLY_TOKENS``).

Loading an encoding takes about half a second: callers on the event loop load
it in a thread first (``load_tokenizer_off_loop``) and count after.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import hashlib
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
MESSAGE_TOKENS = 3  # per message: role and separators
REPLY_TOKENS = 3  # every reply is primed with <|start|>assistant<|message|>
FALLBACK_ENCODING = "o200k_base"

#: OpenAI's published SHA-256 of each encoding file (as tiktoken checks them).
_SHA256 = {
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
}
# the split patterns and special tokens of tiktoken_ext.openai_public (MIT)
_PATTERNS = {
    "o200k_base": "|".join(
        [
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
            r"""\p{N}{1,3}""",
            r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
            r"""\s*[\r\n]+""",
            r"""\s+(?!\S)""",
            r"""\s+""",
        ]
    ),
    "cl100k_base": r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s""",  # noqa: E501
}
_SPECIAL = {
    "o200k_base": {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    "cl100k_base": {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    },
}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Tokenizer:
    """Counts tokens for one model: ``encoding`` names what counts them ("o200k_base",
    or "chars/4" without tiktoken); ``exact`` says whether it is the model's own."""

    model: str
    encoding: str
    exact: bool

    def count(self, text: str) -> int:
        """Tokens in ``text`` (special-token markers in it count as plain text)."""
        if not text:
            return 0
        encoder = _encoder(self.encoding)
        if encoder is None:
            return max(1, len(text) // 4)
        return len(encoder.encode_ordinary(text))

    def count_messages(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """Prompt tokens of a chat request with these messages (see the module docstring)."""
        total = REPLY_TOKENS
        for message in messages:
            total += MESSAGE_TOKENS + self.count(str(message.get("content") or ""))
            total += self.count(str(message.get("role") or ""))
            if message.get("name"):
                total += 1 + self.count(str(message["name"]))
        return total

    @property
    def label(self) -> str:
        """How counts are made, for tables: ``o200k_base`` or ``≈ o200k_base``."""
        return self.encoding if self.exact else f"≈ {self.encoding}"


def tokenizer_for(model: str | None) -> Tokenizer:
    """The tokenizer that counts ``model``'s prompts (approximate for other models)."""
    name = str(model or "")
    try:
        import tiktoken.model
    except ImportError:  # pragma: no cover - tiktoken is a dependency
        return Tokenizer(name, "chars/4", exact=False)
    try:
        encoding = tiktoken.model.encoding_name_for_model(name)
    except KeyError:
        return Tokenizer(name, FALLBACK_ENCODING, exact=False)
    if encoding in _SHA256:
        return Tokenizer(name, encoding, exact=True)
    return Tokenizer(name, FALLBACK_ENCODING, exact=False)  # an old model's encoding


def load_tokenizer(tokenizer: Tokenizer) -> None:
    """Load the tokenizer's encoding now (it is cached for the process)."""
    _encoder(tokenizer.encoding)


async def load_tokenizer_off_loop(tokenizer: Tokenizer) -> None:
    """``load_tokenizer`` in a thread, so the event loop is not held up for it."""
    if tokenizer.encoding in _SHA256 and tokenizer.encoding not in _LOADED:
        await asyncio.to_thread(load_tokenizer, tokenizer)


_LOADED: set[str] = set()  # encodings built so far (counting with them does not wait)


@functools.cache
def _encoder(encoding: str) -> Any:
    """The tiktoken ``Encoding`` built from the shipped, hash-checked file; None when
    tiktoken is not installed."""
    try:
        import tiktoken
    except ImportError:  # pragma: no cover - tiktoken is a dependency
        return None
    with _LOCK:
        ranks = _ranks(encoding)
        built = tiktoken.Encoding(
            f"{encoding}-shipped",
            pat_str=_PATTERNS[encoding],
            mergeable_ranks=ranks,
            special_tokens=_SPECIAL[encoding],
        )
    _LOADED.add(encoding)
    return built


def _ranks(encoding: str) -> dict[bytes, int]:
    """The BPE ranks of ``encoding`` from the shipped file, refused unless it is OpenAI's."""
    data = gzip.decompress((DATA / f"{encoding}.tiktoken.gz").read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != _SHA256[encoding]:
        raise RuntimeError(
            f"{DATA / encoding}.tiktoken.gz is not OpenAI's {encoding} file (sha256 {digest}); "
            "reinstall orchestra-nb"
        )
    ranks = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks
