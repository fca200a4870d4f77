"""Parse bombs: hostile plans and answers through the public API, the decomposer and the CLI.

Each attack must end in one line naming the limit it hit, never in a
RecursionError or a traceback, in bounded time (the timeout marks are far above
what these take now and far below what they took when mending was quadratic:
36 KB of ``{`` took 6-10 s, 230 KB of unclosed objects over six minutes), and
with the event loop free while an answer is read.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import orchestra_nb as onb
from orchestra_nb import LLMError, OpenAILLM, PlanError, TaskGraph, decompose
from orchestra_nb._json_text import MAX_ANSWER_CHARS, MAX_DEPTH
from orchestra_nb._parse import MAX_PLAN_CHARS, MAX_REPAIR_CHARS
from orchestra_nb.llm._base import parse_json
from tests.support import LoopTicks
from tests.support.llm_server import LLMServer, Reply

BOMBS = {
    "36 KB of unclosed braces": "{" * 36_000,
    "100k nested brackets": "[" * 100_000,
    "100k nested brackets, closed": "[" * 100_000 + "]" * 100_000,
    "100k nested objects, closed": '{"a":' * 100_000 + "1" + "}" * 100_000,
    "230 KB of objects never closed, in an unclosed list": "[" + '{"a": x, ' * 23_000,
    "200 KB of unquoted keys": "{" + "a: b, " * 33_000 + "}",
    "240 KB of empty objects": "[" + "{}" * 120_000 + "]",
    "450 KB of empty objects, strict JSON": "[" + ",".join(["{}"] * 150_000) + "]",
}


def one_line_refusal(data) -> str:
    with pytest.raises(PlanError) as info:
        TaskGraph.from_plan(data)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_through_from_plan(name):
    message = one_line_refusal(BOMBS[name])
    if "nested" in name:
        assert f"more than {MAX_DEPTH} levels deep (the limit is MAX_DEPTH = {MAX_DEPTH})" in (
            message
        )
    elif "empty objects" in name:
        assert message.endswith("tasks, more than the 100000 limit (MAX_PLAN_TASKS)")
    elif "never closed" in name or "unclosed braces" in name:
        assert "cut off" in message


def test_a_python_value_nested_too_deep():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    assert "more than 64 levels deep" in one_line_refusal(deep)
    looped: list = []
    looped.append(looped)  # a list that holds itself
    assert "more than 64 levels deep" in one_line_refusal({"subtasks": looped})


def test_size_limits_are_named():
    huge = '{"subtasks": [{"id": "a", "description": "' + "x" * MAX_PLAN_CHARS + '"}]}'
    assert one_line_refusal(huge) == (
        f"the plan text is {len(huge) / 1e6:.1f} MB, more than the "
        f"{MAX_PLAN_CHARS / 1e6:.1f} MB limit (MAX_PLAN_CHARS)"
    )
    mending = "{'subtasks': [" + "{'id': 'a'}, " * 200_000 + "]}"
    assert "too large to repair" in one_line_refusal(mending)
    assert "MAX_REPAIR_CHARS" in one_line_refusal(mending)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_through_parse_json(name):
    value = parse_json(BOMBS[name])  # never raises: a bomb is no JSON, or harmless JSON
    assert value is None or isinstance(value, list | dict)


def test_parse_json_is_bounded():
    assert parse_json("[" * 100_000) is None
    assert parse_json("[" * 100_000 + "]" * 100_000) is None
    assert parse_json(json.dumps({"x": "y" * MAX_ANSWER_CHARS})) is None  # over the limit
    assert parse_json('{"subtasks": [{"id": "a"}, {"id": "b"') is None  # cut off
    assert parse_json('{"subtasks": [{"id": "a"},]}') == {"subtasks": [{"id": "a"}]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", ["100k nested objects, closed", "100k nested brackets, closed"])
def test_bombs_through_the_cli(tmp_path, name):
    path = tmp_path / "plan.json"
    path.write_text(BOMBS[name])
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", "render", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr
    assert result.stderr.startswith(f"orchestra-nb: error: plan file {path}: ")
    assert "the plan nests JSON more than 64 levels deep (the limit is MAX_DEPTH = 64)" in (
        result.stderr
    )


def test_a_plan_file_too_large_is_refused_by_the_cli(tmp_path):
    path = tmp_path / "plan.json"
    with path.open("w") as fh:
        fh.write('{"subtasks": [{"id": "a", "description": "')
        fh.write("x" * (MAX_PLAN_CHARS + 10))
        fh.write('"}]}')
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", "render", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(f"orchestra-nb: error: plan file {path}: the plan text is")
    assert "more than the 16.0 MB limit (MAX_PLAN_CHARS)" in result.stderr


async def test_a_huge_answer_to_decompose_is_refused_and_not_kept(llm_server):
    huge = '{"subtasks": [{"id": "a", "description": "' + "x" * (3 * MAX_ANSWER_CHARS) + '"}]}'
    llm_server.script(huge, huge)
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    with pytest.raises(PlanError) as info:
        await decompose("Write a report", llm=llm, max_attempts=2)
    message = str(info.value)
    assert "\n" not in message
    assert "the answer is 3.0 MB, more than the 1.0 MB limit (MAX_ANSWER_CHARS)" in message
    assert len(info.value.answer) == MAX_ANSWER_CHARS  # what is kept is bounded
    echoed = llm_server.requests[1]["messages"][-2]
    assert echoed["role"] == "assistant" and len(echoed["content"]) < 21_000


async def test_bombs_in_answers_to_decompose_are_refused(llm_server):
    llm_server.script(*(BOMBS[name] for name in BOMBS))
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    with pytest.raises(PlanError) as info:
        await decompose("Write a report", llm=llm, max_attempts=len(BOMBS))
    assert "\n" not in str(info.value)
    reprompts = [r["messages"][-1]["content"] for r in llm_server.requests[1:]]
    assert any("more than 64 levels deep" in text for text in reprompts)


async def test_decompose_reads_a_large_answer_off_the_event_loop():
    # an answer that needs mending (single quotes, trailing commas) and is large
    tasks = [{"id": f"t{i}", "description": "w " * 50} for i in range(1800)]
    answer = json.dumps({"subtasks": tasks}).replace('"', "'").replace("}]", "},]")
    assert 200_000 < len(answer) < MAX_REPAIR_CHARS
    async with LoopTicks(interval=0.002) as blocked:
        TaskGraph.from_plan(answer)  # what reading it on the loop would do
    with LLMServer(lambda request: Reply(content=answer)) as server:
        llm = OpenAILLM("m", base_url=server.url, api_key="k")
        async with LoopTicks(interval=0.002) as ticks:
            graph = await decompose("goal", llm=llm, max_tasks=2000)
    assert len(graph) == 1800
    assert blocked.count <= 1
    assert ticks.count >= 5  # the loop kept turning while the answer was read


async def test_a_huge_answer_to_an_llm_task_fails_the_task_and_is_not_stored(llm_server):
    llm_server.script("x" * (2 * MAX_ANSWER_CHARS))
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k", max_retries=0)
    graph = TaskGraph([onb.Task("a", description="say something")])
    run = await onb.run(graph, llm=llm, store="memory://", retries=0)
    assert run.status["a"] == "failed"
    assert "more than the 1.0 MB limit (MAX_ANSWER_CHARS)" in run.errors["a"]
    assert "a" not in run.results


def test_llm_errors_name_the_answer_limit():
    from orchestra_nb._actions import check_answer_size

    with pytest.raises(LLMError, match=r"the answer is 2\.0 MB, more than the 1\.0 MB limit"):
        check_answer_size("x" * 2_000_000, "the answer")
