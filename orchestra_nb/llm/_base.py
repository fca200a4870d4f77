"""The one small protocol every LLM client speaks, and what a call returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    """A model's answer: the text exactly as returned, its usage, and parsed JSON if asked."""

    text: str
    usage: Usage = Usage()
    model: str = ""
    data: Any = None


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
    """Tolerantly parsed JSON of an answer (fences, trailing commas...), or None for prose."""
    import json

    stripped = text.strip()
    try:
        return json.loads(stripped)
    except ValueError:
        pass
    if "{" not in stripped and "[" not in stripped:
        return None
    import json_repair

    try:
        value = json_repair.loads(stripped)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict | list) and value else None


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
