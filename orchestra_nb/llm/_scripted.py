"""A deterministic LLM driven by Python: for examples, tests and writing recordings."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ._base import (
    Completion,
    Message,
    Usage,
    UsageCounter,
    estimate_tokens,
    normalize_messages,
    parse_json_off_loop,
)

Answer = str | Completion
Script = Callable[[list[dict[str, str]]], Answer] | Iterable[Answer]


class ScriptedLLM(UsageCounter):
    """Answers from a function of the messages, or from a list of answers in order."""

    def __init__(self, script: Script, *, model: str = "scripted") -> None:
        self.model = model
        if callable(script):
            self._answer = script
        else:
            answers = iter(list(script))

            def next_answer(_messages: list[dict[str, str]]) -> Answer:
                try:
                    return next(answers)
                except StopIteration:
                    raise RuntimeError("the scripted LLM has no answers left") from None

            self._answer = next_answer
        self.prompts: list[list[dict[str, str]]] = []
        self._reset_counters()

    def __repr__(self) -> str:
        return f"ScriptedLLM(model={self.model!r}, calls={self.calls})"

    def cache_identity(self) -> dict[str, Any]:
        return {"model": self.model}

    async def complete(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        msgs = normalize_messages(messages)
        self.prompts.append(msgs)
        answer = self._answer(msgs)
        if isinstance(answer, Completion):
            completion = answer
        else:
            prompt = sum(estimate_tokens(m["content"]) for m in msgs)
            completion = Completion(
                answer, Usage(prompt, estimate_tokens(answer)), self.model, finish_reason="stop"
            )
        if schema is not None and completion.data is None:
            completion = dataclasses.replace(
                completion, data=await parse_json_off_loop(completion.text)
            )
        self._count(completion.usage)
        return completion
