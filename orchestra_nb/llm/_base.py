"""The one small protocol every LLM client speaks, and what a call returns.

``complete`` returns a whole answer. Clients that can also hand an answer over
while the model writes it have ``stream``, which returns an ``AnswerStream``:
the text in pieces, then the same ``Completion`` ``complete`` would give.
``stream_answer`` streams from any client, one piece when it cannot stream.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Message = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens spent by one call (or a sum of calls)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
        )


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's answer: the text exactly as returned, its usage, and parsed JSON if asked.

    ``finish_reason`` is the server's word on why the answer ended: ``"stop"`` (the
    model was done), ``"length"`` (cut off by the token limit: the text is not the
    whole answer), ``"content_filter"``, or None when the client cannot tell.
    """

    text: str
    usage: Usage = Usage()
    model: str = ""
    data: Any = None
    finish_reason: str | None = None


@runtime_checkable
class LLM(Protocol):
    """What the decomposer and LLM tasks need from a model client."""

    model: str

    async def complete(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion: ...

    def cache_identity(self) -> dict[str, Any]:
        """What determines the answers (model, sampling parameters) — never secrets."""
        ...


@runtime_checkable
class StreamingLLM(LLM, Protocol):
    """An LLM that can hand its answer over while it is written."""

    def stream(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> AnswerStream: ...


class AnswerStream:
    """An answer as the model writes it: ``async for piece in answer`` gives the text in
    pieces, in order; ``answer.completion`` is the whole ``Completion`` once they ran out
    (text, usage, ``finish_reason``, parsed ``data`` when a schema was asked for).

    Close it (``await answer.aclose()``, or ``async with``) to stop reading early: the
    request is dropped and what it held (a connection, a rate-limit slot) is freed.
    """

    def __init__(self, source: AsyncIterator[str | Completion]) -> None:
        # the source yields text pieces, then the whole Completion as its last item
        self._source = source
        self._completion: Completion | None = None

    def __aiter__(self) -> AnswerStream:
        return self

    async def __anext__(self) -> str:
        if self._completion is not None:
            raise StopAsyncIteration
        try:
            item = await self._source.__anext__()
        except StopAsyncIteration:
            raise RuntimeError("the answer stream ended without its completion") from None
        if isinstance(item, Completion):
            self._completion = item
            await self.aclose()
            raise StopAsyncIteration
        return item

    @property
    def completion(self) -> Completion:
        """The whole answer; RuntimeError while pieces are still to come."""
        if self._completion is None:
            raise RuntimeError("the answer is still streaming: read it to the end first")
        return self._completion

    async def read(self) -> Completion:
        """Read the rest and return the whole answer."""
        async for _piece in self:
            pass
        return self.completion

    async def aclose(self) -> None:
        close = getattr(self._source, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> AnswerStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def stream_answer(
    llm: LLM,
    messages: Sequence[Message] | str,
    *,
    schema: Mapping[str, Any] | None = None,
    **params: Any,
) -> AnswerStream:
    """``llm``'s answer as a stream: its own when it can stream, else one piece."""
    if isinstance(llm, StreamingLLM):
        return llm.stream(messages, schema=schema, **params)

    async def whole() -> AsyncIterator[str | Completion]:
        completion = await llm.complete(messages, schema=schema, **params)
        if completion.text:
            yield completion.text
        yield completion

    return AnswerStream(whole())


def split_tokens(text: str, count: int) -> list[str]:
    """``text`` cut into ``count`` pieces of (nearly) equal length, in order — how a
    replayed answer is handed over when the recording says how many tokens it had."""
    count = max(1, min(count, len(text)))
    size = len(text)
    cuts = [round(i * size / count) for i in range(count + 1)]
    return [text[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def normalize_messages(messages: Sequence[Message] | str) -> list[dict[str, str]]:
    """A plain list of {"role", "content"} dicts; a bare string is one user message."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    out = []
    for message in messages:
        role = str(message.get("role", "user"))
        out.append({"role": role, "content": str(message.get("content", ""))})
    if not out:
        raise ValueError("no messages to send")
    return out


def parse_json(text: str) -> Any:
    """Tolerantly parsed JSON of an answer (fences, trailing commas...), or None.

    None for prose, for an answer cut off inside its JSON, and for one larger than
    ``MAX_ANSWER_CHARS`` or nested deeper than ``MAX_DEPTH``: reading is one
    linear pass, bounded whatever the model wrote.
    """
    from .._json_text import loads

    return loads(text)


_INLINE_PARSE_CHARS = 16_384  # below this a parse takes well under a millisecond


async def parse_json_off_loop(text: str) -> Any:
    """``parse_json`` that keeps the event loop free: large answers are read in a thread."""
    if len(text) <= _INLINE_PARSE_CHARS:
        return parse_json(text)
    return await asyncio.to_thread(parse_json, text)


def estimate_tokens(text: str) -> int:
    """About four characters a token: enough for budgets and offline usage figures."""
    return max(1, len(text) // 4) if text else 0


class UsageCounter:
    """Running totals kept by every client: tokens, calls, rate limits met."""

    usage: Usage
    calls: int
    rate_limited: int

    def _reset_counters(self) -> None:
        self.usage = Usage()
        self.calls = 0
        self.rate_limited = 0

    def _count(self, usage: Usage) -> None:
        self.usage = self.usage + usage
        self.calls += 1
