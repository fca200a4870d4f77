"""LLM clients behind one small protocol: OpenAI-compatible servers, offline replay, scripts.

Importing this package does not import ``openai``; the client loads it when it
first talks to a server.
"""

from __future__ import annotations

from ._base import (
    LLM,
    AnswerStream,
    Completion,
    Message,
    StreamingLLM,
    Usage,
    normalize_messages,
    stream_answer,
)
from ._batch import BATCH_DISCOUNT, BatchLLM, BatchTicket
from ._limits import RateLimit
from ._openai import OpenAILLM
from ._params import AllowedParams
from ._replay import ReplayLLM
from ._scripted import ScriptedLLM

__all__ = [
    "BATCH_DISCOUNT",
    "LLM",
    "AllowedParams",
    "AnswerStream",
    "BatchLLM",
    "BatchTicket",
    "Completion",
    "Message",
    "OpenAILLM",
    "RateLimit",
    "ReplayLLM",
    "ScriptedLLM",
    "StreamingLLM",
    "Usage",
    "describe_llm",
    "llm_from_spec",
    "normalize_messages",
    "stream_answer",
]


def llm_from_spec(spec: LLM | str | None = None, *, model: str | None = None) -> LLM:
    """An LLM from a short spec string (used by the CLI, the magics and ``run(llm=...)``).

    ``None`` or ``"openai"``: OpenAILLM from the environment; ``"openai:MODEL"``;
    ``"ollama:MODEL"`` (Ollama at ``OLLAMA_HOST``, by default localhost:11434; it
    is sent no API key); ``"replay:PATH"`` (offline
    recordings; ``"replay:PATH?latency=0.5"`` answers after half a second,
    ``"replay:PATH?tps=40&first_token=0.5"`` writes answers at 40 tokens a second
    after half a second, as a streaming model would);
    ``"record:PATH"`` (answer from PATH, ask the configured model for prompts it
    lacks and add them). An LLM object is returned unchanged.
    """
    from .._errors import ConfigError

    if spec is not None and not isinstance(spec, str):
        return spec
    text = (spec or "openai").strip()
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "openai":
        return OpenAILLM(model=arg or model)
    if kind == "ollama":  # its own server: never handed the environment's OpenAI key
        return OpenAILLM(model=arg or model or "llama3.1", base_url=_ollama_url())
    if kind in ("replay", "record") and arg:
        path, _, query = arg.partition("?")
        pacing = _replay_pacing(text, query)
        recorder = OpenAILLM(model=model) if kind == "record" else None
        return ReplayLLM(path, record=recorder, model=model, **pacing)
    raise ConfigError(
        f"unknown LLM spec {text!r}: use openai[:MODEL], ollama:MODEL, replay:PATH or record:PATH"
    )


_PACING = {"latency": "latency", "tps": "tokens_per_second", "first_token": "first_token"}


def _replay_pacing(spec: str, query: str) -> dict[str, float]:
    """``latency=S``, ``tps=N`` and ``first_token=S`` from a replay spec's query."""
    from urllib.parse import parse_qsl

    from .._errors import ConfigError

    pacing: dict[str, float] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in _PACING:
            raise ConfigError(
                f"unknown option {name!r} in LLM spec {spec!r}: use latency=SECONDS, "
                "tps=TOKENS_PER_SECOND or first_token=SECONDS"
            )
        try:
            number = float(value)
        except ValueError:
            number = -1.0
        if not (number >= 0 and number != float("inf")) or (name == "tps" and number == 0):
            unit = "TOKENS_PER_SECOND (more than 0)" if name == "tps" else "SECONDS"
            raise ConfigError(f"bad {name} in LLM spec {spec!r}: use ?{name}={unit}")
        pacing[_PACING[name]] = number
    return pacing


def _ollama_url() -> str:
    """Ollama's OpenAI-compatible endpoint, where ``OLLAMA_HOST`` says Ollama listens."""
    import os

    host = (os.environ.get("OLLAMA_HOST") or "localhost:11434").strip().rstrip("/")
    if "://" not in host:
        host = f"http://{host}"
    return f"{host}/v1"


def describe_llm(spec: LLM | str | None) -> dict[str, str] | None:
    """Where answers come from, as plain JSON-able data (no secrets), or None without an LLM.

    ``{"kind": "replay", "path": ..., "model": ..., "note": ...}`` for a recording
    replayed offline, ``"record"`` for one that fills itself from a model,
    ``"openai"`` (with ``model`` and the server's ``host``) for a live server and
    ``"other"`` for any other client. A spec string is described without opening
    anything. Reports use it to say when no model ran.
    """
    if spec is None:
        return None
    if isinstance(spec, str):
        kind, _, arg = spec.strip().partition(":")
        kind = kind.lower()
        if kind in ("replay", "record") and arg:
            return {"kind": kind, "path": arg.partition("?")[0]}
        return {"kind": "openai" if kind in ("openai", "ollama") else "other", "model": arg}
    if isinstance(spec, ReplayLLM):
        described = {
            "kind": "replay" if spec.replaying else "record",
            "path": str(spec.path),
            "model": str(spec.model),
        }
        if spec.note:
            described["note"] = spec.note
        return described
    if isinstance(spec, BatchLLM):
        return {**(describe_llm(spec.llm) or {}), "batch": "yes"}
    if isinstance(spec, OpenAILLM):
        from urllib.parse import urlsplit

        host = urlsplit(spec.base_url).hostname if spec.base_url else "api.openai.com"
        return {"kind": "openai", "model": str(spec.model), "host": str(host)}
    return {"kind": "other", "model": str(getattr(spec, "model", "") or type(spec).__name__)}
