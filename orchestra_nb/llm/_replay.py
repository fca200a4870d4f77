"""Offline answers: replay a recording file, or record one from a real model.

``latency`` makes replayed answers take as long as a server's would, so demos
show what parallelism buys without a network. ``tokens_per_second`` and
``first_token`` pace a replayed answer the way a model writes one: ``stream``
hands it over token by token (as many tokens as the recording says the answer
had), the first after ``first_token`` seconds and then ``tokens_per_second`` of
them a second; ``complete`` waits as long as the whole answer would take to
write. Tokens are due at fixed times from the start, so a slow reader does not
slow the replay down, and every token is its own piece, so the pieces do not
depend on how busy the machine is.

A recording maps a *normalized prompt* (roles kept, whitespace runs collapsed,
plus whether JSON was asked for) to the answer the model gave, byte for byte.
Replay never makes anything up: a prompt with no recording is a
``ReplayMissError`` naming the prompt and how to record it, and why it missed when
the same question is recorded under other instructions (most often: a planning
prompt recorded while other Python functions were registered). Record mode wraps a
real client, answers from the file when it can and asks the model otherwise,
writing each new answer to the file at once (atomically).

The file is plain JSON meant to be read and edited by people: an entry needs
only ``messages`` and ``response``; its ``key`` is filled in when missing. An
optional top-level ``note`` says where the answers came from (the demo's reads
"example answers written for the demo"); reports quote it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .._errors import ReplayMissError
from .._text import shorten
from ._base import (
    LLM,
    AnswerStream,
    Completion,
    Message,
    Usage,
    UsageCounter,
    estimate_tokens,
    normalize_messages,
    parse_json_off_loop,
    split_tokens,
    stream_answer,
)

FORMAT = "orchestra-nb-replay/1"


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


class ReplayLLM(UsageCounter):
    """Answers from a recording file; with ``record=`` fills the file from another LLM."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        record: LLM | None = None,
        model: str | None = None,
        latency: float = 0.0,
        tokens_per_second: float | None = None,
        first_token: float | None = None,
    ) -> None:
        for name, value in (
            ("latency", latency),
            ("tokens_per_second", tokens_per_second),
            ("first_token", first_token),
        ):
            if value is not None and not (isinstance(value, int | float) and value >= 0):
                raise ValueError(f"{name} must be seconds (or tokens a second) >= 0, not {value!r}")
        if tokens_per_second == 0:
            raise ValueError("tokens_per_second must be more than 0 (or None: no pacing)")
        self.path = Path(path)
        self.latency = latency  # seconds to wait before a replayed answer, as a server would
        self.tokens_per_second = tokens_per_second
        self.first_token = latency if first_token is None else first_token
        self.record = record
        self._entries: dict[str, dict[str, Any]] = {}
        self._file_model: str | None = None
        self.note: str | None = None  # the file's own word on where its answers came from
        self._lock: asyncio.Lock | None = None
        self._load()
        self.model = model or self._file_model or getattr(record, "model", None) or "replay"
        self._reset_counters()

    def __repr__(self) -> str:
        mode = "record" if self.record is not None else "replay"
        return f"ReplayLLM({str(self.path)!r}, {mode}, {len(self._entries)} answers)"

    @property
    def replaying(self) -> bool:
        """True when every answer comes from the file (no model to fall back on)."""
        return self.record is None

    def cache_identity(self) -> dict[str, Any]:
        # The model name only: replayed answers are the model's answers, so results cached
        # from a recording and from the live model of the same name are interchangeable.
        return {"model": self.model}

    @staticmethod
    def key_for(messages: Sequence[Message] | str, schema: Mapping[str, Any] | None = None) -> str:
        normal = [[m["role"], _normalize(m["content"])] for m in normalize_messages(messages)]
        text = json.dumps([normal, schema is not None], ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def _load(self) -> None:
        if not self.path.exists():
            if self.record is None:
                raise ReplayMissError(
                    f"no recording file at {self.path}: record one with llm='record:{self.path}'"
                )
            return
        with self.path.open(encoding="utf-8") as fh:
            data = json.load(fh)
        self._file_model = data.get("model")
        note = data.get("note")
        self.note = " ".join(note.split())[:300] if isinstance(note, str) else None
        for entry in data.get("entries", []):
            key = entry.get("key") or self.key_for(
                entry["messages"], {} if entry.get("schema") else None
            )
            self._entries[key] = {**entry, "key": key}  # filled in when a person left it out

    async def complete(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        entry, replayed = await self._entry(messages, schema, params)
        if replayed:
            if self.tokens_per_second:  # as long as writing the whole answer takes
                await asyncio.sleep(
                    self.first_token + len(self._tokens(entry)) / self.tokens_per_second
                )
            elif self.latency:
                await asyncio.sleep(self.latency)
        return await self._completion(entry, schema)

    def stream(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> AnswerStream:
        """The recorded answer token by token, paced by ``first_token`` and
        ``tokens_per_second`` (see the module docstring)."""
        return AnswerStream(self._stream(messages, schema, params))

    async def _stream(
        self, messages: Sequence[Message] | str, schema: Any, params: dict[str, Any]
    ) -> AsyncIterator[str | Completion]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        if self.record is not None and self.key_for(messages, schema) not in self._entries:
            # recording: the model's own stream, passed on as it comes and kept whole
            answer = stream_answer(self.record, messages, schema=schema, **params)
            async for piece in answer:
                yield piece
            entry = await self._keep(self.key_for(messages, schema), messages, schema, answer)
            yield await self._completion(entry, schema)
            return
        entry, replayed = await self._entry(messages, schema, params)
        tps = self.tokens_per_second if replayed else None
        first = self.first_token if replayed else 0.0
        for i, token in enumerate(self._tokens(entry)):
            due = started + first + (i / tps if tps else 0.0)
            await asyncio.sleep(max(0.0, due - loop.time()))  # 0: still lets others run
            yield token
        yield await self._completion(entry, schema)

    async def _entry(
        self, messages: Sequence[Message] | str, schema: Any, params: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The recorded entry for this prompt (recording it if allowed); and whether it
        is replayed (so paced) rather than just recorded."""
        key = self.key_for(messages, schema)
        entry = self._entries.get(key)
        if entry is not None:
            return entry, self.record is None
        if self.record is None:
            prompt = _preview(messages)
            why = self._why_missed(messages, schema)
            raise ReplayMissError(
                f"no recorded answer for {prompt!r} in {self.path}: {why}"
                if why
                else f"no recorded answer for the prompt {prompt!r} in {self.path}; "
                f"record it with llm='record:{self.path}' and a configured model"
            )
        return await self._record(key, messages, schema, params), False

    @staticmethod
    def _tokens(entry: Mapping[str, Any]) -> list[str]:
        text = entry["response"]
        usage = entry.get("usage") or {}
        try:
            count = int(usage.get("completion_tokens") or 0)
        except (TypeError, ValueError):  # a hand-edited entry
            count = 0
        return split_tokens(text, count or estimate_tokens(text)) if text else []

    async def _completion(self, entry: Mapping[str, Any], schema: Any) -> Completion:
        usage = Usage(
            **{
                k: int(v)
                for k, v in (entry.get("usage") or {}).items()
                if k in ("prompt_tokens", "completion_tokens")
            }
        )
        text = entry["response"]
        self._count(usage)
        return Completion(
            text=text,
            usage=usage,
            model=entry.get("model") or self.model,
            data=await parse_json_off_loop(text) if schema is not None else None,
            finish_reason=entry.get("finish_reason", "stop"),
        )

    def _why_missed(
        self, messages: Sequence[Message] | str, schema: Mapping[str, Any] | None
    ) -> str:
        """Why a request missed when the same question *is* recorded under other instructions.

        The usual cause: the system prompt lists what the session offers ("- name: what it
        does", the Python functions a plan may use), and the recording was made when a
        different list was offered. Names the difference so the fix is visible in one line.
        """
        msgs = normalize_messages(messages)
        asked = _questions(msgs)
        if not asked:
            return ""
        ours = _system_lines(msgs)
        now = _listed_names(ours)
        closest: tuple[bool, int, list[str], list[str]] | None = None
        for entry in self._entries.values():
            recorded = normalize_messages(entry.get("messages") or [])
            if bool(entry.get("schema")) != (schema is not None) or _questions(recorded) != asked:
                continue
            theirs = _system_lines(recorded)
            differ = [line for line in theirs if line not in ours]
            differ += [line for line in ours if line not in theirs]
            then = _listed_names(theirs)
            candidate = (then != now, len(differ), then, differ)
            if closest is None or candidate[:2] < closest[:2]:
                closest = candidate
        if closest is None:
            return ""
        names_differ, _, then, differ = closest
        if names_differ:
            return (
                f"it was recorded with the functions {', '.join(then) or '(none)'} offered "
                f"(now: {', '.join(now) or 'none'}): import the module that registers them first"
            )
        if differ:
            return (
                f"it was recorded with other instructions ({len(differ)} lines differ, "
                f"e.g. {shorten(differ[0], 60)!r}): record it with llm='record:{self.path}'"
            )
        return ""

    async def _record(
        self, key: str, messages: Sequence[Message] | str, schema: Any, params: dict[str, Any]
    ) -> dict[str, Any]:
        assert self.record is not None
        completion = await self.record.complete(messages, schema=schema, **params)
        return await self._save(key, messages, schema, completion)

    async def _keep(
        self, key: str, messages: Sequence[Message] | str, schema: Any, answer: AnswerStream
    ) -> dict[str, Any]:
        return await self._save(key, messages, schema, answer.completion)

    async def _save(
        self, key: str, messages: Sequence[Message] | str, schema: Any, completion: Completion
    ) -> dict[str, Any]:
        entry = {
            "key": key,
            "messages": normalize_messages(messages),
            "schema": schema is not None,
            "response": completion.text,
            "usage": {
                "prompt_tokens": completion.usage.prompt_tokens,
                "completion_tokens": completion.usage.completion_tokens,
            },
            "model": completion.model or getattr(self.record, "model", None),
        }
        if completion.finish_reason not in (None, "stop"):
            entry["finish_reason"] = completion.finish_reason
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            self._entries[key] = entry
            self._write()
        return entry

    def _write(self) -> None:
        data: dict[str, Any] = {
            "format": FORMAT,
            "model": self._file_model or getattr(self.record, "model", None) or self.model,
            "entries": sorted(self._entries.values(), key=lambda e: e["key"]),
        }
        if self.note:
            data["note"] = self.note
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, ensure_ascii=False, sort_keys=True)
            fh.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a recording is meant to be shared
        os.replace(tmp, self.path)


_LISTED_NAME = re.compile(r"^- ([A-Za-z_][A-Za-z0-9_.]*): ")  # "- name: what it does"


def _questions(messages: Sequence[Message]) -> list[tuple[str, str]]:
    return [(m["role"], _normalize(m["content"])) for m in messages if m["role"] != "system"]


def _system_lines(messages: Sequence[Message]) -> list[str]:
    lines = []
    for m in messages:
        if m["role"] == "system":
            lines += [_normalize(line) for line in m["content"].splitlines() if line.strip()]
    return lines


def _listed_names(lines: list[str]) -> list[str]:
    return sorted(m.group(1) for line in lines if (m := _LISTED_NAME.match(line)))


def _preview(messages: Sequence[Message] | str, limit: int = 80) -> str:
    msgs = normalize_messages(messages)
    users = [m["content"] for m in msgs if m["role"] == "user"] or [msgs[-1]["content"]]
    return shorten(_normalize(users[-1]), limit)
