"""A real OpenAI-protocol HTTP server on loopback, for tests and benchmarks.

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` from a standard
library ``ThreadingHTTPServer`` in a daemon thread. Answers come from a queue of
scripted replies, then from a responder function; latency, status codes,
``Retry-After`` headers and a server that refuses ``json_schema`` are all
configurable, so the real ``openai`` client can be tested end to end. Hostile
servers too: one that sends its answer a byte at a time (``dribble``), or a
200 whose body is not a chat completion (``raw``). ``rate_limit`` makes it
answer chat completions beyond N per ``rate_window`` seconds with 429 and a
``Retry-After`` saying when the next one is allowed.

It also implements the Batch API (``batch_api=False`` makes both 404):

* ``POST /v1/files`` (multipart upload, ``purpose=batch``) and
  ``GET /v1/files/{id}/content``;
* ``POST /v1/batches`` and ``GET /v1/batches/{id}``. A batch moves one status per
  retrieve — ``validating`` ─► ``in_progress`` ─► its outcome — and reaches the
  outcome only once ``batch_turnaround`` seconds have passed and no ``batch_hold``
  predicate holds it (``release_batches()`` lets held ones go). The outcome is
  taken from ``batch_outcomes`` (default ``completed``): ``completed`` answers
  every line through the same replies/responder as chat completions (non-200
  replies go to the error file), ``failed`` answers none (``errors`` says why),
  ``expired`` answers the first half and puts ``batch_expired`` errors in the
  error file for the rest.

A request with ``"stream": true`` gets a real streamed answer: server-sent
events (``text/event-stream``) in HTTP/1.1 chunked encoding, one event per piece
of the answer (``pieces``, or ``piece_chars`` characters each), ``pace`` seconds
apart, the ``finish_reason`` on the last content event and the usage in a final
event when the client asked for it (``stream_options.include_usage``).
``hold_last`` keeps the last piece back until the test sets that event (or 10 s
pass), so a test can see what the client did before the answer ended;
``drop_after`` hangs up after that many pieces. ``streams`` logs each stream's
progress (pieces sent, whether it ended) as the server sees it.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Reply:
    status: int = 200
    content: str | None = None
    body: dict[str, Any] | str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    usage: dict[str, int] | None = None
    finish_reason: str = "stop"  # "length": the answer was cut off by the token limit
    dribble: float = 0.0  # seconds between the bytes of the body (0: all at once)
    raw: str | None = None  # sent as the body as it is, whatever the status
    # streamed answers (requests with "stream": true)
    pieces: list[str] | None = None  # the answer's pieces, in order (default: piece_chars each)
    piece_chars: int = 7
    pace: float = 0.0  # seconds between pieces
    hold_last: threading.Event | None = None  # the last piece waits for this (at most 10 s)
    drop_after: int | None = None  # hang up after this many pieces, without ending the stream


@dataclass
class StreamLog:
    """One streamed answer as the server sent it."""

    request: int  # index into LLMServer.requests
    pieces: int = 0  # sent so far
    total: int = 0
    ended: bool = False  # the last event ([DONE]) went out
    holding: bool = False  # waiting for hold_last before the last piece


def default_responder(request: dict[str, Any]) -> Reply:
    last = next((m for m in reversed(request["messages"]) if m["role"] == "user"), None)
    first_line = (last or {"content": ""})["content"].strip().splitlines()[:1]
    return Reply(content="Answer: " + (first_line[0] if first_line else ""))


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


BATCH_FINAL = ("completed", "failed", "expired", "cancelled")


@dataclass
class StoredBatch:
    """A batch as the server keeps it."""

    id: str
    input_file_id: str
    endpoint: str
    completion_window: str
    created: float
    lines: list[dict[str, Any]]
    metadata: dict[str, str] | None = None
    status: str = "validating"
    outcome: str = "completed"
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: dict[str, Any] | None = None
    served: list[str] = field(default_factory=list)  # statuses, in the order retrieved

    def to_json(self) -> dict[str, Any]:
        done = self.status in BATCH_FINAL
        total = len(self.lines)
        failed = sum(1 for line in self.lines if line.get("_failed")) if done else 0
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": self.errors,
            "input_file_id": self.input_file_id,
            "completion_window": self.completion_window,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "request_counts": {
                "total": total,
                "completed": total - failed if done else 0,
                "failed": failed,
            },
            "metadata": self.metadata,
        }


class LLMServer:
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Reply | str] | None = None,
        *,
        latency: float = 0.0,
        reject_json_schema: bool = False,
        echo_auth_in_errors: bool = False,
        rate_limit: int | None = None,
        rate_window: float = 60.0,
        batch_api: bool = True,
        batch_turnaround: float = 0.0,
        reject_stream: bool = False,
        reject_stream_options: bool = False,
    ) -> None:
        self.responder = responder or default_responder
        self.latency = latency
        self.reject_json_schema = reject_json_schema
        self.echo_auth_in_errors = echo_auth_in_errors
        self.rate_limit = rate_limit  # chat completions allowed per rate_window seconds
        self.rate_window = rate_window
        self.batch_api = batch_api
        self.batch_turnaround = batch_turnaround
        self.batch_outcomes: deque[str] = deque()  # outcomes of the next batches
        self.batch_hold: Callable[[list[dict[str, Any]]], bool] | None = None
        self.requests: list[dict[str, Any]] = []  # chat-completion requests, as sent
        self.http_requests = 0  # every HTTP request, batch management and 429s included
        self.rate_limited = 0  # 429s sent for the rate limit
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, StoredBatch] = {}  # in the order created
        self.batch_lines: list[dict[str, Any]] = []  # chat requests answered inside batches
        self._released = threading.Event()
        self._recent: deque[float] = deque()  # times of recent chat completions (rate limit)
        self.reject_stream = reject_stream
        self.reject_stream_options = reject_stream_options
        self.streams: list[StreamLog] = []
        self.hung_up = 0  # answers the client stopped reading before their end
        self.concurrency_peak = 0
        self._in_flight = 0
        self._lock = threading.Lock()
        self._script: deque[Reply | str] = deque()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def script(self, *replies: Reply | str) -> None:
        with self._lock:
            self._script.extend(replies)

    def release_batches(self) -> None:
        """Let batches that ``batch_hold`` held reach their outcome."""
        self._released.set()

    def reply_to(self, request: dict[str, Any]) -> Reply:
        """The reply to a chat request: the next scripted one, else the responder's."""
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        reply = scripted if scripted is not None else self.responder(request)
        return Reply(content=reply) if isinstance(reply, str) else reply

    def completion_body(self, request: dict[str, Any], reply: Reply, number: int) -> dict:
        """A chat completion answering ``request`` with ``reply`` (usage ≈ 4 characters a token)."""
        content = reply.content or ""
        prompt = sum(len(m.get("content") or "") for m in request["messages"]) // 4
        usage = dict(
            reply.usage or {"prompt_tokens": prompt, "completion_tokens": max(1, len(content) // 4)}
        )
        usage.setdefault("total_tokens", usage["prompt_tokens"] + usage["completion_tokens"])
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "test-model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": reply.finish_reason,
                    "message": {"role": "assistant", "content": content},
                }
            ],
            "usage": usage,
        }

    def _over_rate_limit(self) -> float | None:
        """Seconds until another chat completion is allowed, or None when one is now."""
        if self.rate_limit is None:
            return None
        now = time.monotonic()
        with self._lock:
            recent = self._recent
            while recent and recent[0] <= now - self.rate_window:
                recent.popleft()
            if len(recent) < self.rate_limit:
                recent.append(now)
                return None
            self.rate_limited += 1
            return recent[0] + self.rate_window - now

    # --- the Batch API ----------------------------------------------------------------

    def _new_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file = {
            "id": f"file-{uuid.uuid4().hex[:12]}",
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self._lock:
            self.files[file["id"]] = {**file, "data": data}
        return file

    def _create_batch(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        file = self.files.get(str(request.get("input_file_id")))
        if file is None:
            return 404, error_body(f"no file {request.get('input_file_id')!r}")
        if request.get("endpoint") != "/v1/chat/completions":
            return 400, error_body(f"unsupported endpoint {request.get('endpoint')!r}")
        try:
            lines = [json.loads(line) for line in file["data"].decode().splitlines() if line]
        except ValueError:
            return 400, error_body("the input file is not JSONL")
        ids = [line.get("custom_id") for line in lines]
        if len(set(ids)) != len(ids):
            return 400, error_body("custom_id values must be unique within a batch")
        batch = StoredBatch(
            id=f"batch_{uuid.uuid4().hex[:12]}",
            input_file_id=file["id"],
            endpoint=request["endpoint"],
            completion_window=str(request.get("completion_window")),
            created=time.monotonic(),
            lines=lines,
            metadata=request.get("metadata"),
        )
        with self._lock:
            batch.outcome = self.batch_outcomes.popleft() if self.batch_outcomes else "completed"
            self.batches[batch.id] = batch
        return 200, batch.to_json()

    def _retrieve_batch(self, batch_id: str) -> tuple[int, dict[str, Any]]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, error_body(f"no batch {batch_id!r}")
        with self._lock:
            self._advance(batch)
            batch.served.append(batch.status)
            return 200, batch.to_json()

    def _advance(self, batch: StoredBatch) -> None:
        """One step along validating ─► in_progress ─► outcome (called under the lock)."""
        if batch.status == "validating":
            batch.status = "in_progress"
        elif batch.status == "in_progress":
            if time.monotonic() - batch.created < self.batch_turnaround:
                return
            hold = self.batch_hold
            if hold is not None and not self._released.is_set() and hold(batch.lines):
                return
            self._finish(batch)

    def _finish(self, batch: StoredBatch) -> None:
        outcome = batch.outcome
        batch.status = outcome
        if outcome == "failed":
            batch.errors = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": "scripted failure", "line": 1}],
            }
            return
        answered = len(batch.lines) if outcome == "completed" else len(batch.lines) // 2
        out, errors = [], []
        for n, line in enumerate(batch.lines):
            entry: dict[str, Any] = {"id": f"batch_req_{n}", "custom_id": line.get("custom_id")}
            if n >= answered:
                line["_failed"] = True
                entry["response"] = None
                entry["error"] = {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion "
                    "window expired.",
                }
                errors.append(entry)
                continue
            request = line.get("body") or {}
            self.batch_lines.append(request)
            reply = self.reply_to_unlocked(request)
            if reply.status != 200:
                line["_failed"] = True
                body = reply.body if isinstance(reply.body, dict) else error_body("error")
                entry["response"] = {"status_code": reply.status, "body": body}
                entry["error"] = None
                errors.append(entry)
            else:
                body = self.completion_body(request, reply, len(self.batch_lines))
                entry["response"] = {"status_code": 200, "request_id": f"req_{n}", "body": body}
                entry["error"] = None
                out.append(entry)
        for entries, name in ((out, "output_file_id"), (errors, "error_file_id")):
            if entries:
                data = "".join(json.dumps(e) + "\n" for e in entries).encode()
                file = {
                    "id": f"file-{uuid.uuid4().hex[:12]}",
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": f"{batch.id}_{name[:-8]}.jsonl",
                    "purpose": "batch_output",
                    "status": "processed",
                    "data": data,
                }
                self.files[file["id"]] = file
                setattr(batch, name, file["id"])

    def reply_to_unlocked(self, request: dict[str, Any]) -> Reply:
        """``reply_to`` for callers that hold the lock already."""
        scripted = self._script.popleft() if self._script else None
        reply = scripted if scripted is not None else self.responder(request)
        return Reply(content=reply) if isinstance(reply, str) else reply

    def start(self) -> LLMServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body go out in two writes: with Nagle on, the body waits for the
            # client's delayed ACK and every answer gains 40 ms
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                with server._lock:
                    server.http_requests += 1
                path = self.path.split("?")[0].rstrip("/")
                parts = path.split("/")
                if path.endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
                    )
                elif server.batch_api and path.endswith("/content") and "/files/" in path:
                    file = server.files.get(parts[-2])
                    if file is None:
                        self._send(404, error_body(f"no file {parts[-2]!r}"))
                    else:
                        self._send(200, file["data"].decode(), content_type="application/jsonl")
                elif server.batch_api and len(parts) >= 2 and parts[-2] == "batches":
                    self._send(*server._retrieve_batch(parts[-1]))
                else:
                    self._send(404, error_body("not found"))

            def do_POST(self) -> None:
                with server._lock:
                    server.http_requests += 1
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?")[0].rstrip("/")
                if path.endswith("/files") or path.endswith("/batches"):
                    if not server.batch_api:
                        self._send(404, error_body(f"unknown path {self.path}"))
                    elif path.endswith("/files"):
                        self._upload(raw)
                    else:
                        self._create(raw)
                    return
                try:
                    request = json.loads(raw)
                except ValueError:
                    self._send(400, error_body("invalid JSON body"))
                    return
                request["_headers"] = {k.lower(): v for k, v in self.headers.items()}
                request["_at"] = time.monotonic()
                with server._lock:
                    server.requests.append(request)
                    server._in_flight += 1
                    server.concurrency_peak = max(server.concurrency_peak, server._in_flight)
                try:
                    self._answer(request)
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _upload(self, raw: bytes) -> None:
                head = f"Content-Type: {self.headers.get('content-type')}\r\n\r\n".encode()
                message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
                fields: dict[str, Any] = {}
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    fields[name] = (part.get_filename(), part.get_payload(decode=True))
                if "file" not in fields or fields.get("purpose", (None, b""))[1] != b"batch":
                    self._send(400, error_body("a file and purpose=batch are required"))
                    return
                filename, data = fields["file"]
                self._send(200, server._new_file(data, filename or "upload", "batch"))

            def _create(self, raw: bytes) -> None:
                try:
                    request = json.loads(raw)
                except ValueError:
                    self._send(400, error_body("invalid JSON body"))
                    return
                self._send(*server._create_batch(request))

            def _answer(self, request: dict[str, Any]) -> None:
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, error_body(f"unknown path {self.path}"))
                    return
                wait = server._over_rate_limit()
                if wait is not None:
                    self._send(
                        429,
                        error_body("rate limit reached", "rate_limit_error"),
                        {
                            "Retry-After": str(max(1, math.ceil(wait))),
                            "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                        },
                    )
                    return
                if server.reject_json_schema and "response_format" in request:
                    time.sleep(server.latency)
                    self._send(
                        400,
                        error_body(
                            "response_format json_schema is not supported", param="response_format"
                        ),
                    )
                    return
                streamed = bool(request.get("stream"))
                if server.reject_stream_options and "stream_options" in request:
                    self._send(400, error_body("Unrecognized request argument: stream_options"))
                    return
                if server.reject_stream and streamed:
                    self._send(400, error_body("stream is not supported by this server"))
                    return
                reply = server.reply_to(request)
                time.sleep(server.latency + reply.delay)
                if reply.raw is not None:
                    self._send(reply.status, reply.raw, reply.headers, dribble=reply.dribble)
                    return
                if reply.status != 200:
                    body = (
                        reply.body
                        if reply.body is not None
                        else error_body(f"error {reply.status}", "server_error")
                    )
                    if server.echo_auth_in_errors:
                        body = error_body(
                            "Incorrect API key provided: "
                            + request["_headers"].get("authorization", ""),
                            "invalid_api_key",
                        )
                    self._send(reply.status, body, reply.headers)
                    return
                body = server.completion_body(request, reply, len(server.requests))
                if streamed:
                    self._stream(request, reply, body["choices"][0]["message"]["content"],
                                 body["usage"])  # fmt: skip
                    return
                self._send(200, body, reply.headers, dribble=reply.dribble)

            def _stream(
                self, request: dict[str, Any], reply: Reply, content: str, usage: dict[str, int]
            ) -> None:
                size = max(1, reply.piece_chars)
                pieces = reply.pieces
                if pieces is None:
                    pieces = [content[i : i + size] for i in range(0, len(content), size)]
                with server._lock:
                    index = next(i for i, r in enumerate(server.requests) if r is request)
                    log = StreamLog(request=index, total=len(pieces))
                    server.streams.append(log)
                head = {
                    "id": f"chatcmpl-{len(server.requests)}",
                    "object": "chat.completion.chunk",
                    "created": int(time.time()),
                    "model": request.get("model", "test-model"),
                }

                def event(choices: list[dict[str, Any]], **more: Any) -> bytes:
                    data = json.dumps({**head, "choices": choices, **more})
                    return f"data: {data}\n\n".encode()

                def delta(text: str | None, finish: str | None = None) -> dict[str, Any]:
                    content_delta = {} if text is None else {"content": text}
                    return {"index": 0, "delta": content_delta, "finish_reason": finish}

                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("transfer-encoding", "chunked")
                    self.send_header("cache-control", "no-cache")
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    first = {"index": 0, "delta": {"role": "assistant", "content": ""},
                             "finish_reason": None}  # fmt: skip
                    self._chunk(event([first]))
                    for i, piece in enumerate(pieces):
                        if reply.drop_after is not None and i >= reply.drop_after:
                            self.close_connection = True
                            self.wfile.flush()
                            return
                        if i == len(pieces) - 1 and reply.hold_last is not None:
                            log.holding = True
                            reply.hold_last.wait(10)
                            log.holding = False
                        elif i and reply.pace:
                            time.sleep(reply.pace)
                        self._chunk(event([delta(piece)]))
                        log.pieces = i + 1
                    self._chunk(event([delta(None, reply.finish_reason)]))
                    if (request.get("stream_options") or {}).get("include_usage"):
                        self._chunk(event([], usage=usage))
                    self._chunk(b"data: [DONE]\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    log.ended = True
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:
                        server.hung_up += 1

            def _chunk(self, data: bytes) -> None:
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

            def _send(
                self,
                status: int,
                body: Any,
                headers: dict[str, str] | None = None,
                *,
                dribble: float = 0.0,
                content_type: str = "application/json",
            ) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(data)))
                    for key, value in (headers or {}).items():
                        self.send_header(key, value)
                    self.end_headers()
                    if not dribble:
                        self.wfile.write(data)
                        return
                    self.wfile.flush()
                    for i in range(len(data)):  # a byte at a time: every read sees progress
                        time.sleep(dribble)
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    with server._lock:  # the client gave up (a timeout test)
                        server.hung_up += 1

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops connects when many clients start at once
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server
