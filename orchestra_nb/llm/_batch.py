"""The provider's Batch API: LLM calls that can wait, answered later at a lower price.

``BatchLLM`` wraps an ``OpenAILLM``. Its calls are not sent one by one: every
call made within ``window`` seconds of the first goes into one JSONL file of
requests, which is uploaded (``/v1/files``) and submitted as a batch
(``/v1/batches``); each call then waits for its own line of the batch's output,
matched by ``custom_id``. One watcher per batch polls it with a growing interval
(``poll_every`` up to ``max_poll``) and, when the batch ends, reads its output
and error files once and hands every waiting call its answer — so whatever
depends on one batch goes on as soon as that batch is back, whatever the other
batches do::

    send(messages, custom_id) ─► queue ──(window)──► upload JSONL ─► create batch
                                   │ on_queued()                      │ on_batched(ticket)
                                   ▼                                  ▼
                           (the caller waits)          poll: validating · in_progress
                                                                      │
    Completion | LLMError ◄── its line of the output / error file ◄── completed · failed
                                                                      expired · cancelled

A *ticket* (``{"batch_id", "custom_id"}``) says where a request went. A call
given the ticket of a batch it is already in (a run resumed after a kernel
restart) waits for that batch instead of sending the request again; if the
server no longer knows the batch, the request is sent anew.

How a batch's end becomes each call's outcome:

* a line answered 200: its ``Completion`` (usage counted here: batch prices);
* a line answered with an error, or a batch that ``failed`` or was
  ``cancelled``: ``LLMError`` naming the batch and the server's reason;
* a batch that ``expired`` (the provider's 24 h window passed first): the lines
  it answered are answers; the others raise ``LLMError`` saying so. They are not
  sent again as plain requests behind the user's back — that costs the full
  price; a run's ``retries`` (or ``resume``) sends them in a new batch;
* a server without the Batch API (404 on ``/v1/files`` or ``/v1/batches``):
  ``ConfigError`` naming the fallback, plain requests.

Everything here runs on the event loop; building the JSONL file and reading the
output files (which can be large) happen in a thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from .._errors import ConfigError, LLMError
from ._base import Completion, Message, UsageCounter, parse_json_off_loop
from ._openai import RETRY_STATUS, OpenAILLM, error_message_of, retry_after_of

log = logging.getLogger("orchestra_nb")

BATCH_DISCOUNT = 0.5
"""The share of the plain price the provider takes off batched requests (OpenAI: 50 %).
Costs of batched work are the plain price times ``1 - BATCH_DISCOUNT``."""
COMPLETION_WINDOW = "24h"  # the only window OpenAI offers
ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # requests one batch may hold (OpenAI's limit)
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,128}")  # ids we put in URLs and records

OnBatched = Callable[["BatchTicket"], None]


class BatchTicket(TypedDict):
    """Where a request went: the batch and the request's ``custom_id`` in it."""

    batch_id: str
    custom_id: str


def ticket_from(value: Any) -> BatchTicket | None:
    """A ticket read back from a run record (untrusted): two short plain ids, else None."""
    if not isinstance(value, Mapping):
        return None
    batch_id, custom_id = value.get("batch_id"), value.get("custom_id")
    for text in (batch_id, custom_id):
        if not isinstance(text, str) or not _ID.fullmatch(text):
            return None
    return {"batch_id": batch_id, "custom_id": custom_id}


class BatchGoneError(LLMError):
    """The server does not know the batch a request was in (404 on retrieving it)."""


@dataclass(eq=False)
class _Call:
    """One waiting call: its request line and the future its answer goes to."""

    custom_id: str
    body: dict[str, Any]
    future: asyncio.Future[tuple[str, dict[str, Any]]]
    on_batched: OnBatched | None = None


@dataclass(eq=False)
class _Watch:
    """The calls waiting on one batch, and the task polling it."""

    batch_id: str
    waiters: dict[str, list[_Call]] = field(default_factory=dict)  # custom_id -> calls
    task: asyncio.Task[None] | None = None


class BatchLLM(UsageCounter):
    """An LLM whose calls go through the provider's Batch API (see the module docstring).

    ``run(..., llm_batch=True)`` wraps the run's ``OpenAILLM`` in one; pass your own
    to tune it: ``window`` (seconds calls are collected into one batch),
    ``max_requests`` per batch, ``poll_every`` / ``max_poll`` (seconds between
    status checks, growing by half each time), ``discount`` (the provider's batch
    discount, for cost figures). Answers are the model's as from the wrapped
    client — same cache identity, so a batched result serves a plain run too.
    """

    def __init__(
        self,
        llm: OpenAILLM,
        *,
        window: float = 0.5,
        max_requests: int = MAX_REQUESTS,
        poll_every: float = 1.0,
        max_poll: float = 60.0,
        discount: float = BATCH_DISCOUNT,
    ) -> None:
        if not isinstance(llm, OpenAILLM):
            raise ConfigError(
                f"the Batch API (llm_batch=True, --batch) needs an OpenAI-compatible LLM "
                f"(OpenAILLM), not {type(llm).__name__}: batches run at the provider"
            )
        for name, value in (("window", window), ("poll_every", poll_every)):
            if not isinstance(value, int | float) or value < 0:
                raise ConfigError(f"{name} must be seconds ≥ 0, not {value!r}")
        if not isinstance(max_poll, int | float) or max_poll < max(poll_every, 0.001):
            raise ConfigError(f"max_poll must be seconds ≥ poll_every, not {max_poll!r}")
        if not isinstance(max_requests, int) or not 1 <= max_requests <= MAX_REQUESTS:
            raise ConfigError(f"max_requests must be 1 to {MAX_REQUESTS}, not {max_requests!r}")
        if not isinstance(discount, int | float) or not 0 <= discount < 1:
            raise ConfigError(f"discount must be a fraction in [0, 1), not {discount!r}")
        self.llm = llm
        self.window = float(window)
        self.max_requests = max_requests
        self.poll_every = float(poll_every)
        self.max_poll = float(max_poll)
        self.discount = float(discount)
        self.batches_created = 0
        self._reset_counters()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[_Call] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._watches: dict[str, _Watch] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- what the LLM protocol and Actions read ------------------------------------------

    @property
    def model(self) -> str:
        return self.llm.model

    @property
    def host(self) -> str:
        return self.llm.host

    @property
    def max_tokens(self) -> int | None:
        return self.llm.max_tokens

    @property
    def allowed_params(self) -> Any:
        return self.llm.allowed_params

    def __repr__(self) -> str:
        return f"BatchLLM(model={self.model!r}, host={self.host!r})"

    def cache_identity(self) -> dict[str, Any]:
        return self.llm.cache_identity()

    async def prepare(self) -> None:
        await self.llm.prepare()

    # --- calls ---------------------------------------------------------------------------

    async def complete(
        self,
        messages: Sequence[Message] | str,
        *,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        """The LLM protocol: the answer, once the batch this call joins is back."""
        return await self.send(messages, schema=schema, **params)

    async def send(
        self,
        messages: Sequence[Message] | str,
        *,
        custom_id: str | None = None,
        ticket: Mapping[str, Any] | None = None,
        on_queued: Callable[[], None] | None = None,
        on_batched: OnBatched | None = None,
        schema: Mapping[str, Any] | None = None,
        **params: Any,
    ) -> Completion:
        """Send one request in the next batch (or wait for the batch ``ticket`` names) and
        return its answer.

        ``custom_id`` identifies the request in its batch (calls with the same one share a
        line: give equal ids to equal requests only); ``on_queued()`` is called once the
        request waits for a batch, ``on_batched(ticket)`` once it is in one — record the
        ticket to pick the batch up after a restart.
        """
        body = self.llm.request_body(messages, schema=schema, **params)
        custom_id = custom_id or f"req-{uuid.uuid4().hex}"
        if not _ID.fullmatch(custom_id):
            raise ValueError(f"custom_id must be 1-128 letters, digits or _.:-, not {custom_id!r}")
        answer = None
        held = ticket_from(ticket)
        if held is not None and held["custom_id"] == custom_id:
            try:
                answer = await self._wait(self._attach(held, on_batched))
            except BatchGoneError:
                log.info("batch %s is gone at %s: sending its request again", held, self.host)
        if answer is None:
            answer = await self._wait(self._enqueue(custom_id, body, on_queued, on_batched))
        completion = self._completion(*answer)
        if schema is not None:
            data = await parse_json_off_loop(completion.text)
            completion = dataclasses.replace(completion, data=data)
        return completion

    async def aclose(self) -> None:
        """Stop collecting and polling: calls still waiting are cancelled (their batches go
        on at the provider; a ticket picks them up later)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for call in self._queue:
            call.future.cancel()
        self._queue = []
        for watch in list(self._watches.values()):
            for calls in watch.waiters.values():
                for call in calls:
                    call.future.cancel()
        self._watches = {}
        tasks, self._tasks = self._tasks, set()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    # --- collecting calls into batches ---------------------------------------------------

    def _bind(self) -> asyncio.AbstractEventLoop:
        """Work on the running loop; what belonged to a loop that is gone is dropped."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop = loop
            self._queue, self._watches, self._tasks = [], {}, set()
            self._flush_handle = None
        return loop

    def _enqueue(
        self,
        custom_id: str,
        body: dict[str, Any],
        on_queued: Callable[[], None] | None,
        on_batched: OnBatched | None,
    ) -> _Call:
        loop = self._bind()
        call = _Call(custom_id, body, loop.create_future(), on_batched)
        self._queue.append(call)
        if len(self._queue) >= self.max_requests:
            self._flush()
        elif self._flush_handle is None:
            self._flush_handle = loop.call_later(self.window, self._flush)
        if on_queued is not None:
            _notify(on_queued)
        return call

    def _attach(self, ticket: BatchTicket, on_batched: OnBatched | None) -> _Call:
        """Wait on a batch a request was sent in earlier (one watcher per batch)."""
        loop = self._bind()
        call = _Call(ticket["custom_id"], {}, loop.create_future(), on_batched)
        watch = self._watches.get(ticket["batch_id"])
        if watch is None:
            watch = self._watches[ticket["batch_id"]] = _Watch(ticket["batch_id"])
            watch.task = self._spawn(self._watch(watch, first_wait=0.0))
        watch.waiters.setdefault(call.custom_id, []).append(call)
        if on_batched is not None:
            _notify(on_batched, ticket)
        return call

    async def _wait(self, call: _Call) -> tuple[str, dict[str, Any]]:
        try:
            return await call.future
        except asyncio.CancelledError:
            self._forget(call)
            raise

    def _forget(self, call: _Call) -> None:
        """A caller stopped waiting: drop its request if not sent yet, and stop polling a
        batch nobody waits for any more."""
        if call in self._queue:
            self._queue.remove(call)
            return
        for watch in list(self._watches.values()):
            calls = watch.waiters.get(call.custom_id)
            if calls and call in calls:
                calls.remove(call)
                if not calls:
                    del watch.waiters[call.custom_id]
                if not watch.waiters:
                    del self._watches[watch.batch_id]
                    if watch.task is not None:
                        watch.task.cancel()
                return

    def _flush(self) -> None:
        self._flush_handle = None
        calls, self._queue = self._queue, []
        calls = [c for c in calls if not c.future.done()]
        if calls:
            self._spawn(self._submit(calls))

    def _spawn(self, work: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _submit(self, calls: list[_Call]) -> None:
        """Upload the calls' requests as one batch, then watch it."""
        try:
            batch_id = await self._create_batch(calls)
        except Exception as exc:
            for call in calls:
                if not call.future.done():
                    call.future.set_exception(exc)
            return
        except asyncio.CancelledError:
            for call in calls:
                call.future.cancel()
            raise
        self.batches_created += 1
        watch = self._watches.setdefault(batch_id, _Watch(batch_id))
        for call in calls:
            if call.future.done():  # its caller gave up while the batch was being made
                continue
            watch.waiters.setdefault(call.custom_id, []).append(call)
            if call.on_batched is not None:
                _notify(call.on_batched, {"batch_id": batch_id, "custom_id": call.custom_id})
        if not watch.waiters:
            del self._watches[batch_id]
        elif watch.task is None:
            watch.task = self._spawn(self._watch(watch, first_wait=self.poll_every))

    async def _create_batch(self, calls: list[_Call]) -> str:
        lines: dict[str, dict[str, Any]] = {}
        for call in calls:
            lines.setdefault(call.custom_id, call.body)
        data = await asyncio.to_thread(_jsonl, lines)
        client = self.llm.client()
        file = await self._api(
            "/v1/files",
            lambda: client.files.create(
                file=("requests.jsonl", data, "application/jsonl"), purpose="batch"
            ),
            missing=self._no_batch_api,
        )
        batch = await self._api(
            "/v1/batches",
            lambda: client.batches.create(
                input_file_id=str(file.id),
                endpoint=ENDPOINT,
                completion_window=COMPLETION_WINDOW,
                metadata={"created_by": "orchestra_nb"},
            ),
            missing=self._no_batch_api,
        )
        batch_id = getattr(batch, "id", None)
        if not isinstance(batch_id, str) or not _ID.fullmatch(batch_id):
            raise LLMError(f"the LLM server at {self.host} created a batch without a usable id")
        log.info("sent %d request(s) to %s as batch %s", len(lines), self.host, batch_id)
        return batch_id

    # --- watching a batch ----------------------------------------------------------------

    async def _watch(self, watch: _Watch, *, first_wait: float) -> None:
        """Poll a batch until it ends, then hand every waiting call its line."""
        client = self.llm.client()
        batch_id = watch.batch_id
        wait = first_wait
        try:
            while True:
                if wait:
                    await asyncio.sleep(wait)
                batch = await self._api(
                    f"/v1/batches/{batch_id}",
                    lambda: client.batches.retrieve(batch_id),
                    missing=lambda path, status: BatchGoneError(
                        f"the LLM server at {self.host} does not know batch {batch_id} ({status})",
                        status=status,
                    ),
                )
                status = str(getattr(batch, "status", ""))
                if status in FINAL_STATUSES:
                    break
                wait = self.poll_every if not wait else min(self.max_poll, wait * 1.5)
            lines = {}
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id:
                    lines.update(await self._read(str(file_id), set(watch.waiters)))
        except Exception as exc:
            self._settle(watch, error=exc)
            return
        self._settle(watch, batch=batch, lines=lines)

    async def _read(self, file_id: str, wanted: set[str]) -> dict[str, dict[str, Any]]:
        """The lines of an output or error file that answer ``wanted`` custom ids."""
        if not _ID.fullmatch(file_id):
            raise LLMError(f"the LLM server at {self.host} named an unusable file id")
        client = self.llm.client()
        content = await self._api(
            f"/v1/files/{file_id}/content",
            lambda: client.files.content(file_id),
            missing=lambda path, status: LLMError(
                f"the LLM server at {self.host} lost the batch's file {file_id} ({status})",
                status=status,
            ),
        )
        return await asyncio.to_thread(_lines, content.content, wanted)

    def _settle(
        self,
        watch: _Watch,
        *,
        batch: Any = None,
        lines: Mapping[str, dict[str, Any]] | None = None,
        error: Exception | None = None,
    ) -> None:
        if self._watches.get(watch.batch_id) is watch:
            del self._watches[watch.batch_id]
        for custom_id, calls in watch.waiters.items():
            line = (lines or {}).get(custom_id)
            for call in calls:
                if call.future.done():
                    continue
                if error is not None:
                    call.future.set_exception(error)
                elif line is not None:
                    call.future.set_result((watch.batch_id, line))
                else:
                    call.future.set_exception(self._unanswered(batch, custom_id))

    def _unanswered(self, batch: Any, custom_id: str) -> LLMError:
        """Why a request has no line in its ended batch."""
        batch_id, status = str(batch.id), str(batch.status)
        where = f"the LLM server at {self.host}"
        if status == "expired":
            return self._expired(batch_id, custom_id)
        if status == "failed":
            errors = getattr(getattr(batch, "errors", None), "data", None) or []
            reason = "; ".join(
                self.llm.scrub(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}")
                for e in errors[:3]
            )
            return LLMError(f"batch {batch_id} failed at {where}: {reason or 'no reason given'}")
        if status == "cancelled":
            return LLMError(f"batch {batch_id} was cancelled at {where} before {custom_id} ran")
        return LLMError(f"batch {batch_id} at {where} ended without an answer to {custom_id}")

    def _expired(self, batch_id: str, custom_id: str) -> LLMError:
        return LLMError(
            f"batch {batch_id} expired before request {custom_id} ran (the provider's "
            f"{COMPLETION_WINDOW} window); retries or resume send it in a new batch, a run "
            "without --batch (llm_batch=False) as a plain request"
        )

    def _completion(self, batch_id: str, line: Mapping[str, Any]) -> Completion:
        """A line of a batch's output or error file as a ``Completion`` or an ``LLMError``."""
        custom_id = str(line.get("custom_id"))
        where = f"the LLM server at {self.host}"
        response = line.get("response")
        status = response.get("status_code") if isinstance(response, Mapping) else None
        if status == 200:
            from openai.types.chat import ChatCompletion

            try:
                parsed = ChatCompletion.model_validate(response.get("body"))
            except ValueError as exc:
                raise LLMError(
                    f"{where} answered request {custom_id} in batch {batch_id} with a body "
                    f"that is not a chat completion ({type(exc).__name__})",
                    status=200,
                ) from None
            completion = self.llm.completion_from(parsed)
            self._count(completion.usage)
            return completion
        error = line.get("error")
        if isinstance(error, Mapping) and error.get("code") == "batch_expired":
            raise self._expired(batch_id, custom_id)
        if isinstance(error, Mapping):
            detail = f"{error.get('code') or 'error'}: {error.get('message') or ''}"
        elif isinstance(response, Mapping) and isinstance(response.get("body"), Mapping):
            body = response["body"].get("error", response["body"])
            detail = str(body.get("message") if isinstance(body, Mapping) else body)
        else:
            detail = "no answer"
        said = f"answered {status}" if isinstance(status, int) else "could not answer"
        raise LLMError(
            f"{where} {said} to request {custom_id} in batch {batch_id}: {self.llm.scrub(detail)}",
            status=status if isinstance(status, int) else None,
        )

    # --- the management calls ------------------------------------------------------------

    def _no_batch_api(self, path: str, status: int) -> Exception:
        return ConfigError(
            f"the LLM server at {self.host} has no Batch API ({path}: {status}); run without "
            "--batch (llm_batch=False) to send plain requests"
        )

    async def _api(
        self,
        path: str,
        make: Callable[[], Awaitable[Any]],
        *,
        missing: Callable[[str, int], Exception],
    ) -> Any:
        """One Batch API call, retried like the wrapped client's calls (429, 5xx, dropped
        connections; ``Retry-After`` honoured); ``missing`` makes the error for a 404."""
        import openai

        llm = self.llm
        where = f"the LLM server at {self.host}"
        attempt = 0
        while True:
            failure: Exception | None = None
            wait: float | None = None
            try:
                return await make()
            except openai.APIStatusError as exc:
                status = exc.status_code
                wait = retry_after_of(exc.response)
                detail = llm.scrub(error_message_of(exc))
                if status in (404, 405):
                    failure = missing(path, status)
                elif status in (401, 403):
                    failure = ConfigError(f"{where} rejected the API key ({status}): {detail}")
                elif status not in RETRY_STATUS or attempt >= llm.max_retries:
                    failure = LLMError(
                        f"{where} answered {status} to {path} after {attempt + 1} attempt(s): "
                        f"{detail}",
                        status=status,
                        retry_after=wait,
                    )
            except (openai.APITimeoutError, openai.APIConnectionError):
                if attempt >= llm.max_retries:
                    tries = attempt + 1
                    failure = LLMError(f"{where} could not be reached for {path} ({tries} tries)")
            except (ValueError, openai.APIResponseValidationError) as exc:
                failure = LLMError(
                    f"{where} answered {path} with a body that is not what the Batch API "
                    f"returns ({type(exc).__name__})"
                )
            if failure is not None:
                raise failure
            if wait is None:
                wait = random.uniform(0, min(llm.max_backoff, llm.backoff * 2**attempt))
            attempt += 1
            await asyncio.sleep(min(wait, llm.max_backoff))


def _notify(callback: Callable[..., None], *args: Any) -> None:
    """Tell a caller something; a callback that fails must not break the batch."""
    try:
        callback(*args)
    except Exception:
        log.exception("batch callback %r failed", callback)


def _jsonl(lines: Mapping[str, dict[str, Any]]) -> bytes:
    """The batch's input file: one request per line."""
    return "".join(
        json.dumps(
            {"custom_id": cid, "method": "POST", "url": ENDPOINT, "body": body},
            ensure_ascii=False,
        )
        + "\n"
        for cid, body in lines.items()
    ).encode()


def _lines(data: bytes | str, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The lines of a batch output file that answer ``wanted`` (others are not kept);
    lines that are not JSON objects are skipped."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    out: dict[str, dict[str, Any]] = {}
    for raw in text.splitlines():
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("custom_id") in wanted:
            out[line["custom_id"]] = line
    return out
