"""The structured event log (log= / --log) and live resource use (run.resources())."""

from __future__ import annotations

import asyncio
import json
import logging

import jsonschema
import pytest

import orchestra_nb as onb
from orchestra_nb._errors import ConfigError
from orchestra_nb._event_log import SCHEMA_FILE
from tests.support.llm_server import Reply

PLAN = {
    "goal": "Test",
    "subtasks": [
        {"id": "a", "name": "First"},
        {"id": "b", "name": "Second", "dependencies": ["a"]},
        {"id": "p", "kind": "python", "function": "shout", "dependencies": ["b"]},
    ],
}


def shout(b) -> str:
    return str(b).upper()


def llm(server) -> onb.OpenAILLM:
    return onb.OpenAILLM("gpt-4o-mini", base_url=server.url, api_key="k")


@pytest.fixture
def server(llm_server):
    llm_server.responder = lambda request: Reply(
        content="ok", usage={"prompt_tokens": 1000, "completion_tokens": 500}
    )
    return llm_server


async def test_every_event_is_one_json_line_that_follows_the_schema(server, tmp_path):
    path = tmp_path / "run.jsonl"
    run = await onb.run(
        PLAN, llm=llm(server), store="memory://", functions={"shout": shout}, log=path
    )
    lines = path.read_text().splitlines()
    assert len(lines) == len(run.events)  # complete when the run has ended
    schema = json.loads(SCHEMA_FILE.read_text())
    records = [json.loads(line) for line in lines]
    for record in records:
        jsonschema.validate(record, schema)
    assert [r["kind"] for r in records] == [e.kind for e in run.events]
    assert records[0]["kind"] == "run_started" and records[-1]["kind"] == "run_finished"
    assert {r["run_id"] for r in records} == {run.id}
    times = [r["t"] for r in records]
    assert times == sorted(times)
    done = {r["task_id"]: r for r in records if r["kind"] == "done"}
    assert done["a"]["usage"] == {
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "usd": pytest.approx((1000 * 0.15 + 500 * 0.60) / 1e6),
    }
    assert "usage" not in done["p"]  # a Python task asks no model
    assert records[-1]["data"]["state"] == "finished"

    again = await onb.run(PLAN, llm=llm(server), store="memory://", functions={"shout": shout},
                          log=path)  # fmt: skip
    assert len(path.read_text().splitlines()) == len(lines) + len(again.events)  # appended


def test_the_schema_rejects_what_is_not_an_event():
    schema = json.loads(SCHEMA_FILE.read_text())
    good = {
        "schema": "orchestra-nb.event/1",
        "ts": "2025-01-01T00:00:00.000000+00:00",
        "run_id": "r",
        "t": 0.5,
        "kind": "done",
        "task_id": "a",
        "attempt": 1,
        "error": None,
        "data": {"tokens": 3},
    }
    jsonschema.validate(good, schema)
    for bad in ({**good, "kind": "exploded"}, {**good, "t": -1}, {**good, "extra": 1}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    missing = dict(good)
    del missing["run_id"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(missing, schema)


async def test_events_go_through_a_logger_given(server):
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("test.orchestra.events")
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    try:
        run = await onb.run(
            PLAN, llm=llm(server), store="memory://", functions={"shout": shout}, log=logger
        )
    finally:
        logger.handlers.clear()
    assert len(seen) == len(run.events)
    assert all(r.levelno == logging.INFO for r in seen)
    assert json.loads(seen[0].getMessage()) == seen[0].orchestra_event
    assert seen[-1].orchestra_event["kind"] == "run_finished"


async def test_a_log_that_cannot_be_written_is_refused_before_the_run(tmp_path):
    with pytest.raises(ConfigError, match="is a directory") as exc:
        onb.start(PLAN, runner=lambda t, i: 1, store="memory://", log=tmp_path)
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="cannot write it"):
        onb.start(PLAN, runner=lambda t, i: 1, store="memory://", log=tmp_path / "no" / "x")
    with pytest.raises(ConfigError, match=r"a file path or a logging\.Logger"):
        onb.start(PLAN, runner=lambda t, i: 1, store="memory://", log=42)


async def test_resources_show_tokens_money_tasks_in_flight_and_memory(llm_server):
    llm_server.latency = 0.3
    llm_server.responder = lambda request: Reply(
        content="ok", usage={"prompt_tokens": 1000, "completion_tokens": 500}
    )
    fan = {"subtasks": [{"id": f"t{i}", "name": f"Part {i}"} for i in range(4)]}
    run = onb.start(
        fan,
        llm=llm(llm_server),
        store="memory://",
        max_workers=3,
        pools={"llm": 2},
        budget=onb.Budget(usd=1),
    )
    for _ in range(300):
        if len(run.running()) == 2:
            break
        await asyncio.sleep(0.01)
    live = run.resources()
    assert live.in_flight == {"all": 2, "llm": 2}  # the llm pool holds them to two
    assert live.capacity == {"all": 3, "llm": 2}
    assert live.budget_usd == 1
    assert live.memory_mb is not None and live.memory_mb > 10
    assert "running 2/3 (llm 2/2)" in live.line
    await run
    end = run.resources()
    assert end.tokens == 4 * 1500
    assert end.usd == pytest.approx(4 * (1000 * 0.15 + 500 * 0.60) / 1e6)
    assert end.in_flight == {"all": 0}
    assert end.tokens_per_minute > 0
    assert "tokens/min" in end.line and "$0.0018 of $1.00" in end.line
    assert json.dumps(end.to_dict())
