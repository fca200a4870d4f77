"""Answers read while they are written: the real openai client against a real server-sent
event stream on loopback, the offline replay at a given pace, and clients that cannot stream."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest

from orchestra_nb import ConfigError, LLMError, OpenAILLM, RateLimit, ReplayLLM
from orchestra_nb.llm import AnswerStream, ScriptedLLM, llm_from_spec, stream_answer
from tests.support.llm_server import LLMServer, Reply

SCHEMA = {"type": "object", "properties": {"subtasks": {"type": "array"}}}
TEXT = "The answer arrives in pieces, each one as soon as the model wrote it."


def make(server: LLMServer, **kwargs) -> OpenAILLM:
    kwargs.setdefault("backoff", 0.01)
    return OpenAILLM("test-model", base_url=server.url, api_key="k", **kwargs)


async def test_pieces_arrive_in_order_then_the_whole_completion(llm_server):
    usage = {"prompt_tokens": 7, "completion_tokens": 15}
    llm_server.script(Reply(content=TEXT, piece_chars=5, usage=usage))
    llm = make(llm_server)
    answer = llm.stream("hi")
    with pytest.raises(RuntimeError, match="still streaming"):
        _ = answer.completion
    pieces = [piece async for piece in answer]
    assert pieces == [TEXT[i : i + 5] for i in range(0, len(TEXT), 5)]
    done = answer.completion
    assert done.text == TEXT
    assert done.finish_reason == "stop"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (7, 15)  # the last event's
    assert llm.calls == 1 and llm.usage == done.usage
    sent = llm_server.requests[0]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    log = llm_server.streams[0]
    assert (log.pieces, log.total, log.ended) == (len(pieces), len(pieces), True)


async def test_a_stream_with_a_json_schema_and_one_without(llm_server):
    plan = json.dumps({"subtasks": [{"id": "a"}]})
    llm_server.script(Reply(content=plan), Reply(content=plan))
    llm = make(llm_server)
    structured = await llm.stream("plan", schema=SCHEMA).read()
    assert structured.data == {"subtasks": [{"id": "a"}]}
    assert llm_server.requests[0]["response_format"]["type"] == "json_schema"
    plain = await make(llm_server, structured_output=False).stream("plan", schema=SCHEMA).read()
    assert plain.data == structured.data
    second = llm_server.requests[1]
    assert "response_format" not in second and second["stream"] is True
    assert second["messages"][-1]["content"].endswith("no prose and no code fences.")


async def test_a_server_refusing_json_schema_in_a_stream_is_asked_in_words():
    with LLMServer(reject_json_schema=True) as server:
        server.script(Reply(content='{"subtasks": []}'))
        llm = make(server)
        done = await llm.stream("plan", schema=SCHEMA).read()
        assert done.data == {"subtasks": []}
        assert llm.structured_output is False
        assert [("response_format" in r, r["stream"]) for r in server.requests] == [
            (True, True),
            (False, True),
        ]


async def test_the_length_limit_shows_in_the_last_event(llm_server):
    llm_server.script(Reply(content="cut off he", finish_reason="length"))
    done = await make(llm_server).stream("hi").read()
    assert (done.text, done.finish_reason) == ("cut off he", "length")


async def test_a_server_without_stream_options_streams_and_usage_is_estimated():
    with LLMServer(reject_stream_options=True) as server:
        server.script(Reply(content=TEXT))
        llm = make(server)
        done = await llm.stream("hi").read()
        assert done.text == TEXT
        assert done.usage.completion_tokens == len(TEXT) // 4  # estimated: the server sent none
        assert llm.stream_usage is False
        assert ["stream_options" in r for r in server.requests] == [True, False]
        await llm.stream("again").read()
        assert "stream_options" not in server.requests[2]  # remembered


async def test_a_server_that_cannot_stream_answers_in_one_piece():
    with LLMServer(reject_stream=True) as server:
        llm = make(server)
        answer = llm.stream("hello")
        assert [piece async for piece in answer] == ["Answer: hello"]
        assert answer.completion.text == "Answer: hello"
        assert llm.streaming is False
        await llm.stream("again").read()
        assert [bool(r.get("stream")) for r in server.requests] == [True, False, False]


async def test_a_server_ignoring_stream_is_asked_again_for_a_whole_answer(llm_server):
    body = {"choices": [{"message": {"content": "whole"}, "finish_reason": "stop"}]}
    llm_server.script(Reply(raw=json.dumps(body)))
    llm = make(llm_server)
    done = await llm.stream("hi").read()
    assert done.text == "Answer: hi"  # asked again without stream (the default responder)
    assert llm.streaming is False


async def test_an_answer_that_breaks_off_is_an_error_naming_what_arrived(llm_server):
    llm_server.script(Reply(content=TEXT, piece_chars=10, drop_after=2))
    limit = RateLimit(max_concurrency=1)
    llm = make(llm_server, rate_limit=limit)
    got: list[str] = []

    async def read() -> None:
        async for piece in llm.stream("hi"):
            got.append(piece)

    with pytest.raises(LLMError) as info:
        await read()
    assert got == [TEXT[:10], TEXT[10:20]]
    message = str(info.value)
    assert "broke off its answer after 20 characters" in message and "\n" not in message
    assert (await llm.stream("after").read()).text == "Answer: after"  # the slot came back


async def test_the_deadline_bounds_the_whole_answer_but_not_the_reader(llm_server):
    llm_server.script(Reply(content="x" * 40, piece_chars=1, pace=0.1))
    llm = make(llm_server, timeout=1.0)
    with pytest.raises(LLMError, match=r"did not finish its answer within the 1 s timeout"):
        await llm.stream("hi").read()
    llm_server.script(Reply(content="abcdef", piece_chars=1))
    slow_reader = []
    async for piece in make(llm_server, timeout=1.0).stream("hi"):
        slow_reader.append(piece)
        await asyncio.sleep(0.3)  # 1.8 s spent reading: the reader's time is its own
    assert "".join(slow_reader) == "abcdef"


async def test_retries_before_the_first_piece_and_one_slot_per_stream(llm_server):
    llm_server.script(Reply(status=503), Reply(content=TEXT, piece_chars=3, pace=0.005))
    llm = make(llm_server, rate_limit=RateLimit(max_concurrency=1))
    assert (await llm.stream("one").read()).text == TEXT
    assert len(llm_server.requests) == 2
    llm_server.script(*(Reply(content=TEXT, piece_chars=3, pace=0.005) for _ in range(2)))
    both = await asyncio.gather(llm.stream("two").read(), llm.stream("three").read())
    assert [c.text for c in both] == [TEXT, TEXT]
    assert llm_server.concurrency_peak == 1  # a stream holds its slot until it is read


async def test_closing_a_stream_early_hangs_up(llm_server):
    llm_server.script(Reply(content="y" * 400, piece_chars=1, pace=0.01))
    llm = make(llm_server)
    async with llm.stream("hi") as answer:
        async for _piece in answer:
            break
    for _ in range(300):
        if llm_server.hung_up:
            break
        await asyncio.sleep(0.01)
    assert llm_server.hung_up == 1
    assert not llm_server.streams[0].ended
    assert llm.calls == 1  # what was asked still counts


async def test_clients_that_cannot_stream_give_one_piece():
    llm = ScriptedLLM(["all at once"])
    answer = stream_answer(llm, "hi")
    assert isinstance(answer, AnswerStream)
    assert [piece async for piece in answer] == ["all at once"]
    assert answer.completion.text == "all at once"


# --- the offline replay, paced like a model ----------------------------------------------------


def recording(tmp_path, text: str, tokens: int):
    path = tmp_path / "rec.json"
    entry = {"messages": [{"role": "user", "content": "hi"}], "response": text,
             "usage": {"prompt_tokens": 1, "completion_tokens": tokens}}  # fmt: skip
    path.write_text(json.dumps({"entries": [entry]}))
    return path


async def test_replay_streams_one_piece_per_recorded_token_in_order(tmp_path):
    path = recording(tmp_path, TEXT, tokens=17)
    llm = ReplayLLM(path, tokens_per_second=400, first_token=0.05)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    beat = asyncio.create_task(ticker())
    seen = []
    answer = llm.stream("hi")
    async for piece in answer:
        seen.append((piece, ticks))
    beat.cancel()
    pieces = [piece for piece, _ in seen]
    assert len(pieces) == 17 and "".join(pieces) == TEXT
    assert max(len(p) for p in pieces) - min(len(p) for p in pieces) <= 1  # even cuts
    at = [tick for _, tick in seen]
    assert all(a < b for a, b in itertools.pairwise(at))  # the loop ran between pieces
    assert answer.completion.text == TEXT and answer.completion.usage.completion_tokens == 17


async def test_replay_without_pacing_still_hands_over_token_by_token(tmp_path):
    path = recording(tmp_path, "abcdefgh", tokens=3)
    pieces = [p async for p in ReplayLLM(path).stream("hi")]
    assert pieces == ["abc", "de", "fgh"]
    assert (await ReplayLLM(path).complete("hi")).text == "abcdefgh"


async def test_record_mode_streams_and_keeps_the_answer(tmp_path):
    path = tmp_path / "rec.json"
    recorder = ReplayLLM(path, record=ScriptedLLM(["recorded words here"]))
    assert [p async for p in recorder.stream("hi")] == ["recorded words here"]
    again = [p async for p in ReplayLLM(path, tokens_per_second=1000).stream("hi")]
    assert "".join(again) == "recorded words here" and len(again) == 4


def test_replay_specs_set_the_pace(tmp_path):
    path = recording(tmp_path, TEXT, tokens=5)
    llm = llm_from_spec(f"replay:{path}?tps=40&first_token=0.5")
    assert (llm.tokens_per_second, llm.first_token, llm.latency) == (40, 0.5, 0.0)
    old = llm_from_spec(f"replay:{path}?latency=0.3")
    assert (old.tokens_per_second, old.first_token, old.latency) == (None, 0.3, 0.3)
    for query, message in (
        ("tps=0", "bad tps in LLM spec"),
        ("tps=fast", "bad tps"),
        ("first_token=-1", "bad first_token"),
        ("latency=x", "bad latency"),
        ("speed=2", "unknown option 'speed'"),
    ):
        with pytest.raises(ConfigError, match=message) as info:
            llm_from_spec(f"replay:{path}?{query}")
        assert "\n" not in str(info.value)
