"""The replanning prompt and how an answer becomes the revised plan (no engine involved)."""

from __future__ import annotations

import json

import pytest

import orchestra_nb as onb
from orchestra_nb import PlanError, Task, TaskGraph
from orchestra_nb._replan import merge_revision, replan, replanning_messages
from orchestra_nb.engine import RevisionRequest
from tests.support.llm_server import LLMServer, Reply


def request(**changes) -> RevisionRequest:
    graph = TaskGraph(
        [
            Task("data", "Collect data", "Load the tables", kind="python", function="collect"),
            Task("sizing", "Market sizing", "Size the market", dependencies=("data",)),
            Task("chart", "Chart", kind="python", function="chart", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("sizing", "chart")),
        ],
        goal="a market report",
    )
    fields = {
        "goal": "a market report",
        "graph": graph,
        "finished": {"data": "[3, 1, 2]", "sizing": "The market grows 80 % a year."},
        "failed": {"chart": "ValueError: the chart library is not installed"},
        "reason": "task 'chart': ValueError: the chart library is not installed",
        "number": 1,
    }
    fields.update(changes)
    return RevisionRequest(**fields)


def test_the_prompt_gives_the_goal_the_plan_what_finished_failed_and_waits():
    system, user = replanning_messages(request(), functions={"collect": "Load", "table": "Tab"})
    assert system["role"] == "system" and "do not list them" in system["content"]
    assert '"table" (Tab)' in system["content"]  # the functions a step may call
    text = user["content"]
    assert text.startswith("Goal: a market report")
    plan = json.loads(text.split("Current plan:\n", 1)[1].split("\n\nFinished", 1)[0])
    assert [t["id"] for t in plan["subtasks"]] == ["data", "sizing", "chart", "report"]
    assert "- sizing (Market sizing): The market grows 80 % a year." in text
    assert "- chart (Chart): ValueError: the chart library is not installed" in text
    assert "Not started: report" in text
    assert "What went wrong: task 'chart': ValueError" in text


def test_the_answer_replaces_the_unfinished_part_and_finished_steps_stay_as_they_are():
    answer = """Here you go:
```json
{"subtasks": [
  {"id": "sizing", "name": "Market sizing", "description": "REWRITTEN", "dependencies": []},
  {"id": "table", "name": "Table", "kind": "python", "function": "table",
   "dependencies": ["Collect data"]},
  {"id": "report", "name": "Report", "kind": "report", "dependencies": ["sizing", "table"]},
]}
```"""
    old = request()
    graph = merge_revision(old, answer)
    assert list(graph.tasks) == ["data", "sizing", "table", "report"]
    assert graph.tasks["data"] == old.graph.tasks["data"]
    assert graph.tasks["sizing"] == old.graph.tasks["sizing"]  # finished: the model's edit ignored
    assert graph.tasks["table"].dependencies == ("data",)  # a finished step named by its name
    assert graph.goal == "a market report"


def test_an_answer_that_cannot_be_used_says_why():
    with pytest.raises(PlanError, match="depends on unknown task 'chart'"):
        merge_revision(request(), {"subtasks": [{"id": "report", "dependencies": ["chart"]}]})
    with pytest.raises(PlanError, match="no step still to run"):
        merge_revision(request(), {"subtasks": [{"id": "data"}]})
    with pytest.raises(PlanError, match="cycle"):
        merge_revision(
            request(),
            {"subtasks": [{"id": "x", "dependencies": ["y"]}, {"id": "y", "dependencies": ["x"]}]},
        )


async def test_replan_re_prompts_with_the_error_and_checks_functions():
    bad = {"subtasks": [{"id": "t", "kind": "python", "function": "missing", "dependencies": []}]}
    good = {
        "subtasks": [
            {"id": "t", "kind": "python", "function": "table", "dependencies": []},
            {"id": "report", "kind": "report", "dependencies": ["t", "sizing"]},
        ]
    }
    with LLMServer() as server:
        server.script(Reply(content=json.dumps(bad)), Reply(content=json.dumps(good)))
        llm = onb.OpenAILLM("test-model", base_url=server.url, api_key="sk-test")
        graph = await replan(request(), llm=llm, functions={"collect": "Load", "table": "Tab"})
        second = server.requests[1]["messages"]
    assert list(graph.tasks) == ["data", "sizing", "t", "report"]
    assert second[-2]["role"] == "assistant"
    assert "uses Python function 'missing', which does not exist" in second[-1]["content"]

    with LLMServer() as server:
        server.script(*[Reply(content="no plan here")] * 2)
        llm = onb.OpenAILLM("test-model", base_url=server.url, api_key="sk-test")
        with pytest.raises(PlanError, match="no usable revised plan after 2 answer"):
            await replan(request(), llm=llm, max_attempts=2)
