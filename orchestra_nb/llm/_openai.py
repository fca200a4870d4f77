"""The client for OpenAI and every OpenAI-compatible server (Azure, Ollama, vLLM, LM Studio).

Built on ``openai.AsyncOpenAI`` with the library's own retries switched off:
we retry 429s, 5xx, timeouts and dropped connections ourselves so that every
retry is visible (counted, fed to the adaptive ``RateLimit``) and so that a
``Retry-After`` header is waited out exactly. The API key is held privately and
scrubbed from anything we raise; reprs show the model and host only.

``timeout`` is one deadline for the whole call — every attempt, and the waits
between them — not a limit per network read (httpx's own timeouts are per
read, so a server sending one byte at a time would never trip them). A server
asking to wait past the deadline (``Retry-After``) makes the call fail at once,
with the wait on the error (``LLMError.retry_after``) for whoever retries.

The key from the environment (``OPENAI_API_KEY``) only goes to the server the
environment names (``OPENAI_BASE_URL``, or OpenAI's own API): a client given
another ``base_url`` (a local Ollama, say) sends only an ``api_key`` passed to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email.utils
import functools
import math
import os
import random
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from .._errors import ConfigError, LLMError, RateLimitError
from ._base import (
    AnswerStream,
    Completion,
    Message,
    Usage,
    UsageCounter,
    estimate_tokens,
    normalize_messages,
    parse_json_off_loop,
)
from ._limits import RateLimit
from ._params import AllowedParams

DEFAULT_MODEL = "gpt-4o-mini"
OPENAI_HOST = "api.openai.com"
RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
_JSON_ONLY = "\n\nAnswer with JSON only, no prose and no code fences."


def _missing_config() -> ConfigError:
    return ConfigError(
        "no LLM is configured: set OPENAI_API_KEY (OpenAI), OPENAI_BASE_URL (a local "
        "OpenAI-compatible server such as Ollama or vLLM), or use the offline replay "
        "client (llm='replay:PATH')"
    )


class OpenAILLM(UsageCounter):
    """An LLM behind the OpenAI chat-completions protocol.

    Arguments win over the environment (``OPENAI_API_KEY``, ``OPENAI_BASE_URL``,
    ``ORCHESTRA_MODEL``; for Azure ``AZURE_OPENAI_ENDPOINT``,
    ``AZURE_OPENAI_API_KEY``, ``OPENAI_API_VERSION``). With nothing configured the
    constructor raises ``ConfigError`` naming what to set.

    ``timeout`` (seconds) bounds a whole call, retries included; ``attempt_timeout``
    optionally bounds each attempt within it, so a stuck request is retried while
    time is left. ``allowed_params`` says which request parameters a plan's tasks
    may set through their ``params`` (see ``AllowedParams``); this client's own
    ``model``, ``max_tokens`` and ``temperature`` stay the ceilings.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float = 60.0,
        attempt_timeout: float | None = None,
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        structured_output: bool | None = None,
        rate_limit: RateLimit | None = None,
        azure_endpoint: str | None = None,
        api_version: str | None = None,
        default_headers: Mapping[str, str] | None = None,
        allowed_params: AllowedParams | None = None,
    ) -> None:
        env = os.environ
        self._azure_endpoint = azure_endpoint or env.get("AZURE_OPENAI_ENDPOINT") or None
        if self._azure_endpoint:
            key = api_key or env.get("AZURE_OPENAI_API_KEY")
            if not key and not azure_endpoint:  # both from the environment: they go together
                key = env.get("OPENAI_API_KEY")
            self._api_version = api_version or env.get("OPENAI_API_VERSION") or "2024-10-21"
            self.base_url: str | None = self._azure_endpoint
        else:
            self.base_url = base_url or env.get("OPENAI_BASE_URL") or None
            key = api_key or None
            if not key and (base_url is None or _host_of(base_url) == OPENAI_HOST):
                key = env.get("OPENAI_API_KEY") or None  # the environment's key, its server
            self._api_version = None
        if not key and not self.base_url:
            raise _missing_config()
        for name, value in (("timeout", timeout), ("attempt_timeout", attempt_timeout)):
            if value is not None and not (isinstance(value, int | float) and value > 0):
                raise ConfigError(f"{name} must be positive seconds, not {value!r}")
        self.__key = key or "not-needed"  # local servers ignore the key but the client wants one
        self.model = model or env.get("ORCHESTRA_MODEL") or DEFAULT_MODEL
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = float(timeout)
        self.attempt_timeout = attempt_timeout
        self.allowed_params = allowed_params
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.structured_output = structured_output
        self.streaming: bool | None = None  # None until a stream shows whether the server can
        self.stream_usage: bool | None = None  # whether it sends usage at the end of a stream
        self.rate_limit = rate_limit
        self._headers = dict(default_headers or {})
        self._clients: dict[int, Any] = {}
        self._reset_counters()

    # --- display ----------------------------------------------------------------------

    @property
    def host(self) -> str:
        return _host_of(self.base_url) if self.base_url else OPENAI_HOST

    def __repr__(self) -> str:
        return f"OpenAILLM(model={self.model!r}, host={self.host!r})"

    def cache_identity(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def __getstate__(self) -> dict[str, Any]:
        """Picklable (a Dask worker can make LLM calls): live clients stay behind."""
        state = dict(self.__dict__)
        state["_clients"] = {}
        return state

    # --- the client, one per event loop ------------------------------------------------

    async def prepare(self) -> None:
        """Import openai and build the client on a thread, so the first call does not stall
        the event loop (the import and the TLS setup take a few hundred milliseconds)."""
        loop = asyncio.get_running_loop()
        if id(loop) not in self._clients:
            client = await asyncio.to_thread(self._new_client)
            self._clients = {id(loop): client}

    def client(self) -> Any:
        """The ``openai`` client for the running event loop (the Batch API client uses it)."""
        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None:
            client = self._new_client()
            self._clients = {id(loop): client}  # clients of finished loops are dropped
        return client

    def _new_client(self) -> Any:
        import openai

        common = {
            "api_key": self.__key,
            "timeout": self.timeout,
            "max_retries": 0,
            "default_headers": self._headers or None,
        }
        if self._azure_endpoint:
            return openai.AsyncAzureOpenAI(
                azure_endpoint=self._azure_endpoint, api_version=self._api_version, **common
            )
        return openai.AsyncOpenAI(base_url=self.base_url, **common)

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        for client in clients.values():
            with contextlib.suppress(RuntimeError):  # bound to a loop that is gone
                await client.close()

    async def __aenter__(self) -> OpenAILLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- calls ------------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        msgs = normalize_messages(messages)
        request = self._request(msgs, schema, params)
        deadline = _Deadline(self.timeout)
        try:
            response = await self._send(request, deadline)
        except _SchemaRefused:
            self._without_schema(request, msgs)
            response = await self._send(request, deadline)
        if schema is not None and "response_format" in request:
            self.structured_output = True
        completion = self._completion(response)
        if schema is not None:
            data = await parse_json_off_loop(completion.text)
            completion = dataclasses.replace(completion, data=data)
        return completion

    def stream(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> AnswerStream:
        """The answer as the server writes it (server-sent events).

        The same request as ``complete`` (structured output, parameters, retries,
        rate limit and one deadline for the whole answer), sent with ``stream=True``.
        Usage comes from the server's last event where it sends one
        (``stream_options.include_usage``), else it is estimated from the text.
        A server that refuses streams is asked without, once, and answers in one piece
        from then on. Retries happen only before the first piece arrives; an answer
        that breaks off later is an ``LLMError`` saying how much had arrived.
        """
        return AnswerStream(self._stream(normalize_messages(messages), schema, params))

    def request_body(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """The chat-completions request for ``messages`` as the JSON the server reads: this
        client's model and settings, ``params`` on top (a server's own ones flat in the
        body). ``complete`` sends it; the Batch API client writes it into its JSONL file."""
        msgs = normalize_messages(messages)
        body: dict[str, Any] = {"model": self.model, "messages": msgs}
        for name in ("temperature", "max_tokens"):
            value = params.pop(name, getattr(self, name))
            if value is not None:
                body[name] = value
        extra = params.pop("extra_body", None)
        body.update(params)
        if isinstance(extra, Mapping):
            body.update(extra)
        if schema is not None and self.structured_output is not False:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": dict(schema), "strict": False},
            }
        elif schema is not None:
            body["messages"] = _ask_for_json(msgs)
        return body

    def _request(
        self, msgs: list[dict[str, str]], schema: Mapping[str, Any] | None, params: dict[str, Any]
    ) -> dict[str, Any]:
        """``request_body`` as the ``openai`` client takes it: its own parameters by name,
        a server's own ones (top_k, min_p...) in ``extra_body``."""
        body = self.request_body(msgs, schema=schema, **params)
        body.pop("stream", None)
        known = _create_parameters() - {"stream", "stream_options"}
        request = {k: v for k, v in body.items() if k in known}
        others = {k: v for k, v in body.items() if k not in known}
        if others:
            request["extra_body"] = others
        return request

    def _without_schema(self, request: dict[str, Any], msgs: list[dict[str, str]]) -> None:
        """The server refused json_schema: ask for JSON in words, now and from now on."""
        self.structured_output = False
        request.pop("response_format", None)
        request["messages"] = _ask_for_json(msgs)

    async def _stream(
        self, msgs: list[dict[str, str]], schema: Mapping[str, Any] | None, params: dict[str, Any]
    ) -> AsyncIterator[str | Completion]:
        import openai

        if self.streaming is False:  # this server answers in one piece
            completion = await self.complete(msgs, schema=schema, **params)
            if completion.text:
                yield completion.text
            yield completion
            return
        request = self._request(msgs, schema, params)
        request["stream"] = True
        if self.stream_usage is not False:
            request["stream_options"] = {"include_usage": True}
        deadline = _Deadline(self.timeout)
        whole = False  # the server refused to stream: it answers in one piece
        while True:
            try:
                response = await self._send(request, deadline, keep_slot=not whole)
                break
            except _SchemaRefused:
                self._without_schema(request, msgs)
            except _StreamOptionsRefused:
                self.stream_usage = False
                request.pop("stream_options", None)
            except _StreamRefused:
                self.streaming = False
                whole = True
                request.pop("stream", None)
                request.pop("stream_options", None)
        if schema is not None and "response_format" in request:
            self.structured_output = True
        if whole:
            completion = self._completion(response)
            if schema is not None:
                data = await parse_json_off_loop(completion.text)
                completion = dataclasses.replace(completion, data=data)
            if completion.text:
                yield completion.text
            yield completion
            return
        pieces: list[str] = []
        received = 0
        finish: str | None = None
        usage: Usage | None = None
        model = ""
        counted = False
        silent = False  # not one event came: the server ignored "stream" (answered whole)
        events = 0
        limit = self.rate_limit
        try:
            chunks = response.__aiter__()
            while True:
                failure: Exception | None = None
                try:
                    async with asyncio.timeout(max(deadline.remaining(), 0.0)):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    failure = LLMError(
                        f"the LLM server at {self.host} did not finish its answer within the "
                        f"{self.timeout:g} s timeout ({received} characters arrived)"
                    )
                except (openai.APIError, ValueError) as exc:  # the client wraps transport errors
                    failure = LLMError(
                        f"the LLM server at {self.host} broke off its answer after {received} "
                        f"characters ({type(exc).__name__}: {self.scrub(str(exc))[:120]})",
                        status=getattr(exc, "status_code", None),
                    )
                if failure is not None:
                    raise failure
                events += 1
                self.streaming = True
                model = getattr(chunk, "model", None) or model
                raw = getattr(chunk, "usage", None)
                if raw is not None:
                    usage = _usage(raw)
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                choice = choices[0]
                finish = getattr(choice, "finish_reason", None) or finish
                text = getattr(getattr(choice, "delta", None), "content", None)
                if text is None or text == "":
                    continue
                if not isinstance(text, str):
                    raise LLMError(
                        f"the LLM server at {self.host} streamed a piece that is not text",
                        status=200,
                    )
                pieces.append(text)
                received += len(text)
                with deadline.paused():  # the reader's time is not the server's
                    yield text
            if not events:
                silent = counted = True
            else:
                text = "".join(pieces)
                if usage is None:  # the server sends none: an estimate keeps budgets honest
                    usage = _estimated_usage(request["messages"], text)
                self._count(usage)
                counted = True
                if limit is not None:
                    limit.on_success()
                data = await parse_json_off_loop(text) if schema is not None else None
                yield Completion(
                    text=text,
                    usage=usage,
                    model=model or self.model,
                    data=data,
                    finish_reason=finish,
                )
        finally:
            if not counted:  # stopped early: what was asked and what arrived still cost
                self._count(_estimated_usage(request["messages"], "".join(pieces)))
            if limit is not None:
                limit.release()
            with contextlib.suppress(Exception):
                await response.close()
        if silent:  # asked again, without streaming
            self.streaming = False
            completion = await self.complete(msgs, schema=schema, **params)
            if completion.text:
                yield completion.text
            yield completion

    def _completion(self, response: Any) -> Completion:
        completion = self.completion_from(response)
        self._count(completion.usage)
        return completion

    def completion_from(self, response: Any) -> Completion:
        """A ``Completion`` from the server's chat completion (the ``openai`` object);
        ``LLMError`` when it has no answer in it. Usage is not counted here."""
        choices = getattr(response, "choices", None)
        choice = choices[0] if isinstance(choices, list) and choices else None
        message = getattr(choice, "message", None)
        if message is None:
            raise LLMError(
                f"the LLM server at {self.host} answered 200 without a chat completion "
                "(no choices)",
                status=200,
            )
        text = getattr(message, "content", None) or ""
        if not isinstance(text, str):
            raise LLMError(
                f"the LLM server at {self.host} answered 200 with a message that is not text",
                status=200,
            )
        usage = _usage(getattr(response, "usage", None))
        return Completion(
            text=text,
            usage=usage,
            model=getattr(response, "model", "") or self.model,
            finish_reason=getattr(choice, "finish_reason", None),
        )

    async def _send(
        self, request: dict[str, Any], deadline: _Deadline, *, keep_slot: bool = False
    ) -> Any:
        """The server's response, retried while the deadline allows. With ``keep_slot``
        (a stream, still being read) the rate limit's slot stays taken: the caller
        releases it when the answer has been read."""
        import openai

        attempt = 0
        tokens = sum(len(m["content"]) for m in request["messages"]) // 4
        while True:
            limit = self.rate_limit
            if limit is not None:
                with deadline.paused():  # queueing behind our own rate limit is not the server's
                    await limit.acquire(tokens)
            # errors are raised after the except blocks so that no exception carrying the
            # server's text (which may echo the key) stays attached as __context__
            failure: Exception | None = None
            wait: float | None = None
            kept = False
            budget = deadline.remaining()
            if self.attempt_timeout is not None:
                budget = min(budget, self.attempt_timeout)
            try:
                async with asyncio.timeout(budget):
                    response = await self.client().chat.completions.create(
                        **request, timeout=max(budget, 0.001)
                    )
            except openai.APIStatusError as exc:
                status = exc.status_code
                wait = retry_after_of(exc.response)
                if status == 429:
                    self.rate_limited += 1
                    if limit is not None:
                        limit.on_rate_limited()
                refused = _refusal(exc, request) if status in (400, 422) else None
                if refused is not None:
                    failure = refused
                elif status not in RETRY_STATUS or attempt >= self.max_retries:
                    failure = self._status_error(exc, attempt + 1, wait)
                elif self._delay(attempt, wait) >= deadline.remaining():
                    failure = self._status_error(exc, attempt + 1, wait, deadline=True)
            except (TimeoutError, openai.APITimeoutError, openai.APIConnectionError) as exc:
                timed_out = isinstance(exc, TimeoutError | openai.APITimeoutError)
                if deadline.remaining() <= 0:
                    failure = LLMError(
                        f"the LLM server at {self.host} did not answer within the "
                        f"{self.timeout:g} s timeout ({attempt + 1} attempt(s))"
                    )
                elif attempt >= self.max_retries:
                    what = "timed out" if timed_out else "failed"
                    failure = LLMError(
                        f"the LLM server at {self.host} {what} after {attempt + 1} attempt(s)"
                    )
            except (ValueError, openai.APIResponseValidationError) as exc:
                # a 200 whose body is not JSON, or not a chat completion
                failure = LLMError(
                    f"the LLM server at {self.host} answered with a body that is not a chat "
                    f"completion ({type(exc).__name__}: {self.scrub(str(exc))[:120]})",
                    status=getattr(exc, "status_code", 200),
                )
            else:
                if limit is not None and not keep_slot:
                    limit.on_success()
                kept = keep_slot
                return response
            finally:
                if limit is not None and not kept:
                    limit.release()
            if failure is not None:
                raise failure
            delay = min(self._delay(attempt, wait), max(0.0, deadline.remaining()))
            attempt += 1
            await asyncio.sleep(delay)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, max(0.0, retry_after))
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))  # full jitter

    def _status_error(
        self, exc: Any, attempts: int, retry_after: float | None, *, deadline: bool = False
    ) -> Exception:
        status = exc.status_code
        detail = self.scrub(error_message_of(exc))
        where = f"the LLM server at {self.host}"
        if status in (401, 403):
            return ConfigError(f"{where} rejected the API key ({status}): {detail}")
        if status == 404:
            return ConfigError(f"{where} does not know model {self.model!r} (404): {detail}")
        asked = f" and asked to wait {retry_after:g} s" if retry_after is not None else ""
        late = f", past the {self.timeout:g} s timeout" if deadline else ""
        if status == 429:
            return RateLimitError(
                f"{where} kept rate limiting (429) after {attempts} attempt(s){asked}{late}",
                status=429,
                retry_after=retry_after,
            )
        return LLMError(
            f"{where} answered {status} after {attempts} attempt(s){asked}{late}: {detail}",
            status=status,
            retry_after=retry_after,
        )

    def scrub(self, text: str) -> str:
        """``text`` (a server's error message) with the API key masked, on one line."""
        key = self.__key
        if key and key != "not-needed":
            text = text.replace(key, "***")
        return " ".join(text.split())[:300]


class _SchemaRefused(Exception):
    """The server does not support json_schema response formats."""


class _StreamOptionsRefused(Exception):
    """The server streams, but refuses ``stream_options`` (usage in the last event)."""


class _StreamRefused(Exception):
    """The server does not stream answers."""


def _refusal(exc: Any, request: Mapping[str, Any]) -> Exception | None:
    """What a 400 says the server cannot do with this request, when it is one of ours."""
    text = error_message_of(exc).lower()
    if "stream_options" in request and ("stream_options" in text or "include_usage" in text):
        return _StreamOptionsRefused()
    if "response_format" in request and _mentions_schema(exc):
        return _SchemaRefused()
    if request.get("stream") and "stream" in text:
        return _StreamRefused()
    return None


def _usage(raw: Any) -> Usage:
    return Usage(
        int(getattr(raw, "prompt_tokens", 0) or 0),
        int(getattr(raw, "completion_tokens", 0) or 0),
    )


def _estimated_usage(messages: Sequence[Mapping[str, str]], text: str) -> Usage:
    prompt = sum(estimate_tokens(m.get("content") or "") for m in messages)
    return Usage(prompt, estimate_tokens(text))


class _Deadline:
    """Seconds left of one call's timeout; time spent in ``paused()`` does not count."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def remaining(self) -> float:
        return self._at - time.monotonic()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self._at += time.monotonic() - started


@functools.cache
def _create_parameters() -> frozenset[str]:
    """What ``chat.completions.create`` takes as keywords (anything else is refused by it)."""
    import inspect

    from openai.resources.chat.completions import AsyncCompletions

    return frozenset(inspect.signature(AsyncCompletions.create).parameters) - {"self"}


def _host_of(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "?"
    return (parts.hostname or "?") + (f":{port}" if port else "")


def _ask_for_json(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message["role"] == "user":
            message["content"] += _JSON_ONLY
            break
    return out


def _mentions_schema(exc: Any) -> bool:
    text = error_message_of(exc).lower()
    return any(word in text for word in ("response_format", "json_schema", "structured"))


def error_message_of(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and error.get("message"):
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(getattr(exc, "message", "") or exc)


def retry_after_of(response: Any) -> float | None:
    headers = getattr(response, "headers", None) or {}
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            seconds = float(ms) / 1000
        except ValueError:
            pass
        else:
            if math.isfinite(seconds):
                return max(0.0, seconds)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = parsed.timestamp() - time.time()
    return max(0.0, seconds) if math.isfinite(seconds) else None
