"""LLM clients behind one small protocol: OpenAI-compatible servers, offline replay, scripts.

Importing this package does not import ``openai``; the client loads it when it
first talks to a server.
"""

from __future__ import annotations

from ._base import LLM, Completion, Message, Usage, normalize_messages
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
    "BatchLLM",
    "BatchTicket",
    "Completion",
    "Message",
    "OpenAILLM",
    "RateLimit",
    "ReplayLLM",
    "ScriptedLLM",
    "Usage",
    "describe_llm",
    "llm_from_spec",
    "normalize_messages",
]


def llm_from_spec(spec: LLM | str | None = None, *, model: str | None = None) -> LLM:
    """An LLM from a short spec string (used by the CLI, the magics and ``run(llm=...)``).

    ``None`` or ``"openai"``: OpenAILLM from the environment; ``"openai:MODEL"``;
    ``"ollama:MODEL"`` (Ollama at ``OLLAMA_HOST``, by default localhost:11434; it
    is sent no API key); ``"replay:PATH"`` (offline
    recordings; ``"replay:PATH?latency=0.5"`` answers after half a second);
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
        latency = 0.0
        if query.startswith("latency="):
            try:
                latency = float(query.split("=", 1)[1])
            except ValueError:
                raise ConfigError(
                    f"bad latency in LLM spec {text!r}: use ?latency=SECONDS"
                ) from None
        recorder = OpenAILLM(model=model) if kind == "record" else None
        return ReplayLLM(path, record=recorder, model=model, latency=latency)
    raise ConfigError(
        f"unknown LLM spec {text!r}: use openai[:MODEL], ollama:MODEL, replay:PATH or record:PATH"
    )


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
