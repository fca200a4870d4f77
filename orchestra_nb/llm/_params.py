"""Which request parameters a plan's LLM tasks may set, and within what bounds.

A plan written by a model is untrusted input, and a task's ``params`` would go
straight into its API request. So they pass through an ``AllowedParams`` first:
every name must be on the list, every value within its bounds, and the
client's own settings are ceilings a plan can lower but never raise. The
model, the number of answers (``n``), the messages, streaming, tools, response
formats, timeouts and extra headers are never a plan's to set, whatever the
list says; the run's timeout and retries are not request parameters at all.

The client a user builds says what its plans may choose (``OpenAILLM(...,
allowed_params=AllowedParams(temperature=(0, 0.7)))``); without one the
defaults below apply.
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .._errors import PlanError

#: Request fields no plan may set: they pick the model, multiply the cost, replace the
#: prompt, or change how the answer is read or how long the call may take.
NEVER = frozenset(
    {
        "model",
        "messages",
        "n",
        "best_of",
        "stream",
        "stream_options",
        "response_format",
        "schema",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "parallel_tool_calls",
        "timeout",
        "extra_headers",
        "extra_query",
        "extra_body",
        "max_completion_tokens",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "user",
        "store",
        "metadata",
        "service_tier",
        "prediction",
        "audio",
        "modalities",
        "reasoning_effort",
    }
)
_MAX_STOP = 4  # stop sequences, as OpenAI allows
_MAX_STOP_CHARS = 64

Range = tuple[float, float]
# values come from a model: show a bounded glimpse of them in errors
_SHORT = reprlib.Repr()  # keyword arguments need Python 3.12
_SHORT.maxstring = _SHORT.maxother = 40
_SHORT.maxlist = _SHORT.maxdict = 4
_SHORT.maxlevel = 2


@dataclass(frozen=True)
class AllowedParams:
    """The allow-list for a task's ``params`` on its LLM request.

    A range ``(low, high)`` allows a number within it; ``None`` forbids the
    parameter. ``max_tokens`` is a ceiling: a plan may ask for fewer tokens
    than ``max_tokens`` here or the client's own ``max_tokens``, whichever is
    lower, and may not set it when neither is given. ``seed`` and ``stop`` (up
    to four short strings) are allowed or not. ``extra`` allows other numeric
    parameters your server knows (``{"top_k": (1, 100)}``); names in ``NEVER``
    cannot be allowed.
    """

    temperature: Range | None = (0.0, 1.0)
    top_p: Range | None = (0.0, 1.0)
    presence_penalty: Range | None = (-2.0, 2.0)
    frequency_penalty: Range | None = (-2.0, 2.0)
    max_tokens: int | None = None
    seed: bool = True
    stop: bool = True
    extra: Mapping[str, Range] = field(default_factory=dict)

    def __post_init__(self) -> None:
        forbidden = sorted(set(self.extra) & NEVER)
        if forbidden:
            raise ValueError(f"{', '.join(forbidden)} can never be set by a plan")
        object.__setattr__(self, "extra", dict(self.extra))

    def names(self) -> list[str]:
        """Parameters a plan may set under this list."""
        ranges = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
        out = [name for name in ranges if getattr(self, name) is not None]
        out.append("max_tokens")
        out += [name for name in ("seed", "stop") if getattr(self, name)]
        return out + sorted(self.extra)

    def check(
        self, task_id: str, params: Mapping[str, Any], *, client_max_tokens: int | None = None
    ) -> dict[str, Any]:
        """The request parameters of one task, or ``PlanError`` naming the task and the
        first parameter that is not allowed."""
        out: dict[str, Any] = {}
        for name, value in params.items():
            reason = self._refusal(name, value, client_max_tokens)
            if reason is not None:
                raise PlanError(
                    f"task {task_id!r}: params.{_SHORT.repr(name).strip(chr(39))} = "
                    f"{_SHORT.repr(value)} {reason}",
                    ids=[task_id],
                )
            out[name] = value
        return out

    def _refusal(self, name: str, value: Any, client_max_tokens: int | None) -> str | None:
        if not isinstance(name, str) or name in NEVER:
            return "cannot be set by a plan (the user's settings decide it)"
        if name == "max_tokens":
            ceilings = [c for c in (self.max_tokens, client_max_tokens) if c is not None]
            if not ceilings:
                return (
                    "is not allowed: a plan may only lower max_tokens, and none is set (give "
                    "the client max_tokens=...)"
                )
            if not _is_int(value) or not 1 <= value <= min(ceilings):
                return f"is not allowed: use a whole number from 1 to {min(ceilings)}"
            return None
        if name == "seed":
            if not self.seed:
                return _not_allowed(self)
            return None if _is_int(value) else "is not allowed: use a whole number"
        if name == "stop":
            if not self.stop:
                return _not_allowed(self)
            texts = [value] if isinstance(value, str) else value
            if (
                isinstance(texts, list)
                and len(texts) <= _MAX_STOP
                and all(isinstance(t, str) and len(t) <= _MAX_STOP_CHARS for t in texts)
            ):
                return None
            return f"is not allowed: use up to {_MAX_STOP} strings of {_MAX_STOP_CHARS} characters"
        bounds = self.extra.get(name) if name in self.extra else getattr(self, name, None)
        if bounds is None or (name not in self.extra and name not in self.names()):
            return _not_allowed(self)
        low, high = bounds
        if not _is_number(value) or not low <= value <= high:
            return f"is not allowed: use a number from {low:g} to {high:g}"
        return None


def _not_allowed(allowed: AllowedParams) -> str:
    return f"is not allowed; a plan may set: {', '.join(allowed.names())}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
