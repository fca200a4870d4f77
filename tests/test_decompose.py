"""Goal -> plan through real clients: structured output, repair by re-prompting, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from orchestra_nb import Completion, OpenAILLM, PlanError, ReplayLLM, TaskGraph, decompose
from orchestra_nb._decompose import (
    CONTINUE_PROMPT,
    PLAN_SCHEMA,
    ContinuationJoiner,
    join_continuation,
    planning_messages,
)
from orchestra_nb.llm import ScriptedLLM
from tests.support.llm_server import LLMServer, Reply

GOOD = json.dumps(
    {
        "subtasks": [
            {
                "id": "task_1",
                "name": "Research",
                "description": "Find sources",
                "dependencies": [],
                "estimated_time": 10,
            },
            {
                "id": "task_2",
                "name": "Write",
                "description": "Write it up",
                "dependencies": ["task_1"],
                "estimated_time": 20,
                "kind": "report",
            },
        ]
    }
)
CYCLIC = json.dumps([{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}])


async def test_plan_from_structured_output(llm_server):
    llm_server.script(GOOD)
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report on batteries", llm=llm)
    assert list(graph.tasks) == ["task_1", "task_2"]
    assert graph.goal == "Write a report on batteries"
    assert graph.tasks["task_2"].kind == "report"
    sent = llm_server.requests[0]
    assert sent["response_format"]["json_schema"]["schema"] == PLAN_SCHEMA
    assert sent["messages"][1]["content"] == "Write a report on batteries"


async def test_malformed_then_good_answer_on_the_reprompt(llm_server):
    llm_server.script("Sorry, here it is: {'subtasks': [", CYCLIC, GOOD)
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report", llm=llm)
    assert len(graph) == 2
    assert len(llm_server.requests) == 3
    second = llm_server.requests[1]["messages"]
    assert second[-2] == {"role": "assistant", "content": "Sorry, here it is: {'subtasks': ["}
    assert second[-1]["content"].startswith("That plan cannot be used: the plan has no tasks")
    third = llm_server.requests[2]["messages"]
    assert "dependency cycle" in third[-1]["content"]


async def test_gives_up_with_the_last_answer():
    llm = ScriptedLLM(["I can't do that.", "Still no.", "Nope."])
    with pytest.raises(PlanError) as info:
        await decompose("Write a report", llm=llm, max_attempts=3)
    assert str(info.value).startswith(
        "no usable plan after 3 answer(s): the answer contains no JSON"
    )
    assert info.value.answer == "Nope."
    assert llm.calls == 3


async def test_too_many_tasks_is_sent_back():
    big = json.dumps([{"id": f"t{i}"} for i in range(30)])
    llm = ScriptedLLM([big, GOOD])
    graph = await decompose("goal", llm=llm, max_tasks=10)
    assert len(graph) == 2
    assert "use at most 10" in llm.prompts[1][-1]["content"]


async def test_python_functions_are_offered_and_checked():
    answer = json.dumps(
        [
            {"id": "load", "kind": "python", "function": "load_data"},
            {"id": "chart", "kind": "python", "function": "draw_chart", "dependencies": ["load"]},
        ]
    )
    llm = ScriptedLLM([answer, answer.replace("draw_chart", "load_data")])
    graph = await decompose("goal", llm=llm, functions={"load_data": "Load the market data."})
    assert "load_data: Load the market data." in llm.prompts[0][0]["content"]
    assert "'draw_chart', which does not exist" in llm.prompts[1][-1]["content"]
    assert graph.tasks["chart"].function == "load_data"


async def test_empty_goal():
    with pytest.raises(PlanError, match="the goal is empty"):
        await decompose("  ", llm=ScriptedLLM([GOOD]))


def test_planning_messages_are_pure():
    assert planning_messages("g") == planning_messages("g")
    assert planning_messages("g", context="c")[1]["content"] == "g\n\nContext:\nc"


def test_cli_plan_with_replay(tmp_path):
    import asyncio

    path = tmp_path / "rec.json"
    goal = "Write a report on batteries"
    recorder = ReplayLLM(path, record=ScriptedLLM([GOOD]))
    asyncio.run(decompose(goal, llm=recorder))
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", "plan", "--llm", f"replay:{path}", goal],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert [t["id"] for t in plan["subtasks"]] == ["task_1", "task_2"]
    assert plan["goal"] == goal


def test_cli_errors_are_one_line(tmp_path, monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    result = subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", "plan", "goal"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("orchestra-nb: error: no LLM is configured: set OPENAI_API_KEY")
    assert result.stderr.count("\n") == 1
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestra_nb.cli",
            "plan",
            "--llm",
            f"replay:{tmp_path}/r.json",
            "An unrecorded goal",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 2
    assert "no recording file" in missing.stderr


# --- answers cut off by the length limit ------------------------------------------------------


async def test_an_answer_cut_by_the_length_limit_is_continued_not_mended(llm_server):
    cut = len(GOOD) * 3 // 5
    llm_server.script(Reply(content=GOOD[:cut], finish_reason="length"), GOOD[cut:])
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report", llm=llm)
    assert graph == TaskGraph.from_plan(GOOD, goal="Write a report")
    first, second = llm_server.requests
    assert first["response_format"]["type"] == "json_schema"  # structured output by default
    assert "response_format" not in second  # the rest of a document is not a document
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": GOOD[:cut]},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


async def test_a_continuation_in_a_new_fence_that_repeats_the_last_words(llm_server):
    cut = len(GOOD) // 2
    llm_server.script(
        Reply(content="Here it is:\n```json\n" + GOOD[:cut], finish_reason="length"),
        "```json\n" + GOOD[cut - 30 :] + "\n```",
    )
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report", llm=llm)
    assert list(graph.tasks) == ["task_1", "task_2"]


async def test_an_answer_still_cut_after_the_continuations_is_sent_back(llm_server):
    cut = len(GOOD) // 3
    pieces = [GOOD[:cut], GOOD[cut : 2 * cut], GOOD[2 * cut : 2 * cut + 5]]
    llm_server.script(*(Reply(content=p, finish_reason="length") for p in pieces), GOOD)
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report", llm=llm, max_continuations=2)
    assert len(graph) == 2
    assert len(llm_server.requests) == 4
    reprompt = llm_server.requests[3]
    assert reprompt["response_format"]["type"] == "json_schema"
    assert reprompt["messages"][-1]["content"].startswith(
        "That plan cannot be used: the answer was still cut off by the length limit after "
        "2 continuation(s)"
    )


async def test_without_continuations_a_cut_answer_is_refused_not_shortened():
    cut = Completion(GOOD[: len(GOOD) * 4 // 5], finish_reason="length")
    llm = ScriptedLLM([cut, cut])
    with pytest.raises(PlanError, match="still cut off by the length limit after 0"):
        await decompose("goal", llm=llm, max_attempts=2, max_continuations=0)


def test_joining_a_continuation():
    head = '{"subtasks": [{"id": "a", "name": "Collect the figures"}, {"id": "b", "name": "Wri'
    assert join_continuation(head, 'te"}]}') == head + 'te"}]}'
    assert join_continuation(head, '```json\nte"}]}\n```') == head + 'te"}]}\n```'
    repeated = head[-25:] + 'te"}]}'
    assert join_continuation(head, repeated) == head + 'te"}]}'
    again = '{"subtasks": [{"id": "a", "name": "Collect the figures"}]}'
    assert join_continuation(head, again) == again  # the model started over


async def test_a_replay_recorded_with_other_functions_says_so(tmp_path):
    path = tmp_path / "rec.json"
    functions = {"load_data": "Load the table.", "chart": "Draw it."}
    recorder = ReplayLLM(path, record=ScriptedLLM([GOOD]))
    await decompose("Write a report", llm=recorder, functions=functions)

    from orchestra_nb import ReplayMissError

    with pytest.raises(ReplayMissError) as none_now:
        await decompose("Write a report", llm=ReplayLLM(path))
    assert str(none_now.value) == (
        f"no recorded answer for 'Write a report' in {path}: it was recorded with the "
        "functions chart, load_data offered (now: none): import the module that registers "
        "them first"
    )
    with pytest.raises(ReplayMissError, match=r"chart, load_data offered \(now: chart\)"):
        await decompose("Write a report", llm=ReplayLLM(path), functions={"chart": "Draw it."})
    with pytest.raises(ReplayMissError, match=r"^no recorded answer for the prompt 'Other goal'"):
        await decompose("Other goal", llm=ReplayLLM(path), functions=functions)
    graph = await decompose("Write a report", llm=ReplayLLM(path), functions=functions)
    assert list(graph.tasks) == ["task_1", "task_2"]


# --- answers read as they stream --------------------------------------------------------------


async def test_a_streamed_plan_is_the_plan_read_whole(llm_server):
    llm_server.script(Reply(content=GOOD, piece_chars=3), GOOD)
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    streamed = await decompose("Write a report", llm=llm, stream=True)
    whole = await decompose("Write a report", llm=llm)
    assert streamed == whole
    first, second = llm_server.requests
    assert first["stream"] is True and "stream" not in second
    assert first["response_format"]["type"] == "json_schema"  # structured output by default
    assert llm_server.streams[0].pieces == -(-len(GOOD) // 3)


async def test_a_streamed_plain_text_answer_when_the_server_has_no_json_schema():
    text_plan = (
        "1. search('solid-state batteries')\n2. summarize($1)\n3. write_report($1, $2)\njoin()"
    )
    with LLMServer(reject_json_schema=True) as server:
        server.script(Reply(content=text_plan, piece_chars=4), text_plan)
        llm = OpenAILLM("m", base_url=server.url, api_key="k")
        streamed = await decompose("Write a report", llm=llm, stream=True)
        whole = await decompose("Write a report", llm=llm)
    assert streamed == whole
    assert [t.dependencies for t in streamed.tasks.values()] == [(), ("1",), ("1", "2")]
    assert [("response_format" in r, bool(r.get("stream"))) for r in server.requests] == [
        (True, True),  # refused: asked again in words
        (False, True),
        (False, False),
    ]


async def test_a_streamed_answer_cut_by_the_length_limit_is_continued_as_a_stream(llm_server):
    cut = len(GOOD) * 3 // 5
    llm_server.script(
        Reply(content=GOOD[:cut], finish_reason="length", piece_chars=5),
        Reply(content="```json\n" + GOOD[cut - 25 :] + "\n```", piece_chars=5),
    )
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report", llm=llm, stream=True)
    assert graph == TaskGraph.from_plan(GOOD, goal="Write a report")
    _, second = llm_server.requests
    assert second["stream"] is True and "response_format" not in second
    assert second["messages"][-2:] == [
        {"role": "assistant", "content": GOOD[:cut]},
        {"role": "user", "content": CONTINUE_PROMPT},
    ]


async def test_a_streamed_unusable_answer_is_sent_back(llm_server):
    llm_server.script(Reply(content=CYCLIC, piece_chars=4), Reply(content=GOOD, piece_chars=4))
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    graph = await decompose("Write a report", llm=llm, stream=True)
    assert list(graph.tasks) == ["task_1", "task_2"]
    reprompt = llm_server.requests[1]["messages"]
    assert reprompt[-2] == {"role": "assistant", "content": CYCLIC}
    assert "dependency cycle" in reprompt[-1]["content"]


def test_a_continuation_joined_piece_by_piece_is_joined_as_a_whole():
    import random

    rng = random.Random(7)
    head = GOOD[:150]
    rests = [
        GOOD[150:],
        "```json\n" + GOOD[120:] + "\n```",
        "  ```\n" + GOOD[150:],
        GOOD[100:],  # repeats the last words first
        GOOD,  # starts over
        "```json\n" + GOOD + "\n```",
        "",
        "x",
        "``",
        GOOD[150:160],
    ]
    for rest in rests:
        for _ in range(30):
            joiner = ContinuationJoiner(head)
            text = head
            cuts = sorted(
                rng.sample(range(1, len(rest)), min(max(len(rest) - 1, 0), rng.randint(0, 12)))
            )
            pieces = [rest[a:b] for a, b in zip([0, *cuts], [*cuts, len(rest)], strict=True)]
            for joined in [*(joiner.feed(p) for p in pieces), joiner.finish()]:
                if joined is not None:
                    restart, more = joined
                    text = more if restart else text + more
            assert text == join_continuation(head, rest), (rest[:30], pieces)
