"""A real OpenAI-protocol HTTP server on loopback, for tests and benchmarks.

Serves ``POST /v1/chat/completions`` and ``GET /v1/models`` from a standard
library ``ThreadingHTTPServer`` in a daemon thread. Answers come from a queue of
scripted replies, then from a responder function; latency, status codes,
``Retry-After`` headers and a server that refuses ``json_schema`` are all
configurable, so the real ``openai`` client can be tested end to end. Hostile
servers too: one that sends its answer a byte at a time (``dribble``), or a
200 whose body is not a chat completion (``raw``).

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

import json
import threading
import time
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


class LLMServer:
    def __init__(
        self,
        responder: Callable[[dict[str, Any]], Reply | str] | None = None,
        *,
        latency: float = 0.0,
        reject_json_schema: bool = False,
        echo_auth_in_errors: bool = False,
        reject_stream: bool = False,
        reject_stream_options: bool = False,
    ) -> None:
        self.responder = responder or default_responder
        self.latency = latency
        self.reject_json_schema = reject_json_schema
        self.echo_auth_in_errors = echo_auth_in_errors
        self.reject_stream = reject_stream
        self.reject_stream_options = reject_stream_options
        self.streams: list[StreamLog] = []
        self.requests: list[dict[str, Any]] = []
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
                if self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": "test-model", "object": "model"}]}
                    )
                else:
                    self._send(404, error_body("not found"))

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
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

            def _answer(self, request: dict[str, Any]) -> None:
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, error_body(f"unknown path {self.path}"))
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
                with server._lock:
                    scripted = server._script.popleft() if server._script else None
                reply = scripted if scripted is not None else server.responder(request)
                if isinstance(reply, str):
                    reply = Reply(content=reply)
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
                content = reply.content or ""
                prompt = sum(len(m.get("content") or "") for m in request["messages"]) // 4
                usage = reply.usage or {
                    "prompt_tokens": prompt,
                    "completion_tokens": max(1, len(content) // 4),
                }
                usage.setdefault(
                    "total_tokens", usage["prompt_tokens"] + usage["completion_tokens"]
                )
                if streamed:
                    self._stream(request, reply, content, usage)
                    return
                body = {
                    "id": f"chatcmpl-{len(server.requests)}",
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
            ) -> None:
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
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
