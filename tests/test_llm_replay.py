"""Offline replay: byte-for-byte answers, record mode, and misses that say so."""

from __future__ import annotations

import json

import pytest

from orchestra_nb import ConfigError, OpenAILLM, ReplayLLM, ReplayMissError
from orchestra_nb.llm import ScriptedLLM, llm_from_spec

ANSWER = '```json\n{"subtasks": [{"id": "a",}]}\n```\n  trailing spaces  \nünïcødé ✓\n'
MESSAGES = [
    {"role": "system", "content": "You plan work."},
    {"role": "user", "content": "Write a report\non batteries"},
]


async def test_record_then_replay_byte_for_byte(tmp_path):
    path = tmp_path / "rec.json"
    scripted = ScriptedLLM([ANSWER], model="gpt-test")
    recorder = ReplayLLM(path, record=scripted)
    first = await recorder.complete(MESSAGES, schema={"type": "object"})
    assert first.text == ANSWER
    assert scripted.calls == 1
    again = await recorder.complete(MESSAGES, schema={"type": "object"})  # from the file now
    assert again.text == ANSWER and scripted.calls == 1

    replay = ReplayLLM(path)
    got = await replay.complete(MESSAGES, schema={"type": "object"})
    assert got.text == ANSWER
    assert got.data == {"subtasks": [{"id": "a"}]}
    assert got.usage == first.usage
    assert replay.model == "gpt-test"
    assert replay.calls == 1

    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "orchestra-nb-replay/1"
    assert data["entries"][0]["response"] == ANSWER


async def test_whitespace_differences_still_hit(tmp_path):
    path = tmp_path / "rec.json"
    await ReplayLLM(path, record=ScriptedLLM(["ok"])).complete(MESSAGES)
    spaced = [
        {"role": "system", "content": "  You   plan work.\n"},
        {"role": "user", "content": "Write a report on\tbatteries"},
    ]
    assert (await ReplayLLM(path).complete(spaced)).text == "ok"


async def test_schema_and_plain_requests_are_different_recordings(tmp_path):
    path = tmp_path / "rec.json"
    await ReplayLLM(path, record=ScriptedLLM(["plain"])).complete(MESSAGES)
    with pytest.raises(ReplayMissError):
        await ReplayLLM(path).complete(MESSAGES, schema={"type": "object"})


async def test_missing_recording_names_the_prompt(tmp_path):
    path = tmp_path / "rec.json"
    await ReplayLLM(path, record=ScriptedLLM(["x"])).complete("known prompt")
    with pytest.raises(ReplayMissError) as info:
        await ReplayLLM(path).complete([{"role": "user", "content": "An unknown   question?"}])
    message = str(info.value)
    assert "'An unknown question?'" in message
    assert str(path) in message and "record" in message
    assert "\n" not in message


async def test_a_miss_names_the_functions_the_recording_was_made_with(tmp_path):
    # a planning prompt lists the Python functions on offer; recorded with some, asked
    # with none (the module that registers them was not imported): the miss says so
    from orchestra_nb._decompose import planning_messages

    path = tmp_path / "rec.json"
    offered = {"load_data": "Load the tables.", "draw_chart": "Draw a chart."}
    recorder = ReplayLLM(path, record=ScriptedLLM(["plan"]))
    await recorder.complete(planning_messages("Write a report", functions=offered), schema={})
    with pytest.raises(ReplayMissError) as info:
        await ReplayLLM(path).complete(planning_messages("Write a report"), schema={})
    message = str(info.value)
    assert "recorded with the functions draw_chart, load_data offered (now: none)" in message
    assert "import the module that registers them" in message
    assert "\n" not in message
    with pytest.raises(ReplayMissError) as info:  # another goal: nothing to explain
        await ReplayLLM(path).complete(planning_messages("Write a poem"), schema={})
    assert "functions" not in str(info.value)


async def test_a_miss_under_other_instructions_says_so(tmp_path):
    path = tmp_path / "rec.json"
    await ReplayLLM(path, record=ScriptedLLM(["ok"])).complete(MESSAGES)
    other = [{"role": "system", "content": "You plan work briefly."}, MESSAGES[1]]
    with pytest.raises(
        ReplayMissError, match=r"recorded with other instructions \(2 lines.*record:"
    ):
        await ReplayLLM(path).complete(other)


def test_missing_file(tmp_path):
    with pytest.raises(ReplayMissError, match="no recording file at"):
        ReplayLLM(tmp_path / "nope.json")


async def test_hand_written_entries_need_no_key(tmp_path):
    path = tmp_path / "hand.json"
    path.write_text(
        json.dumps(
            {
                "entries": [
                    {"messages": [{"role": "user", "content": "2 + 2?"}], "response": "4"},
                    {
                        "messages": [{"role": "user", "content": "plan"}],
                        "schema": True,
                        "response": "{}",
                    },
                ]
            }
        )
    )
    replay = ReplayLLM(path)
    assert (await replay.complete("2 + 2?")).text == "4"
    assert (await replay.complete("plan", schema={"type": "object"})).text == "{}"
    assert replay.model == "replay"


async def test_concurrent_recording_keeps_every_answer(tmp_path):
    import asyncio

    path = tmp_path / "rec.json"
    recorder = ReplayLLM(path, record=ScriptedLLM(lambda m: m[-1]["content"].upper()))
    await asyncio.gather(*(recorder.complete(f"q{i}") for i in range(20)))
    replay = ReplayLLM(path)
    for i in range(20):
        assert (await replay.complete(f"q{i}")).text == f"Q{i}"


def test_specs(tmp_path, monkeypatch):
    path = tmp_path / "r.json"
    path.write_text('{"entries": []}')
    assert isinstance(llm_from_spec(f"replay:{path}"), ReplayLLM)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-x")
    assert isinstance(llm_from_spec("openai:gpt-x"), OpenAILLM)
    assert llm_from_spec("openai:gpt-x").model == "gpt-x"
    assert llm_from_spec("ollama:llama3").base_url == "http://localhost:11434/v1"
    recording = llm_from_spec(f"record:{tmp_path}/new.json")
    assert isinstance(recording.record, OpenAILLM)
    scripted = ScriptedLLM(["a"])
    assert llm_from_spec(scripted) is scripted
    with pytest.raises(ConfigError, match="unknown LLM spec 'claude:x'"):
        llm_from_spec("claude:x")


async def test_a_recorded_finish_reason_is_replayed(tmp_path):
    from orchestra_nb import Completion

    path = tmp_path / "rec.json"
    cut = Completion('{"subtasks": [', finish_reason="length")
    recorder = ReplayLLM(path, record=ScriptedLLM([cut, "whole"]))
    await recorder.complete("first")
    await recorder.complete("second")
    replay = ReplayLLM(path)
    assert (await replay.complete("first")).finish_reason == "length"
    assert (await replay.complete("second")).finish_reason == "stop"


async def test_the_file_says_where_its_answers_came_from(tmp_path):
    from orchestra_nb.llm import describe_llm

    path = tmp_path / "rec.json"
    path.write_text(
        json.dumps(
            {
                "note": "written by hand\n for a demo",
                "model": "demo",
                "entries": [{"messages": MESSAGES, "response": "ok"}],
            }
        )
    )
    replay = ReplayLLM(path)
    assert replay.note == "written by hand for a demo"
    assert describe_llm(replay) == {
        "kind": "replay",
        "path": str(path),
        "model": "demo",
        "note": "written by hand for a demo",
    }
    recorder = ReplayLLM(path, record=ScriptedLLM(["new"]))
    await recorder.complete("a new prompt")
    assert json.loads(path.read_text())["note"] == "written by hand for a demo"  # kept
    assert describe_llm(recorder)["kind"] == "record"
    assert describe_llm("replay:x.json?latency=0.3") == {"kind": "replay", "path": "x.json"}
    assert describe_llm(None) is None
    live = describe_llm(OpenAILLM(model="m", base_url="http://user:pw@host:1/v1", api_key="sk-1"))
    assert live == {"kind": "openai", "model": "m", "host": "host"}  # no secrets
