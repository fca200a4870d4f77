"""Actions: LLM tasks through a real client, Python functions, reports, rate limits."""

from __future__ import annotations

import threading

import pytest

import orchestra_nb as onb
from orchestra_nb import (
    ConfigError,
    Image,
    Markdown,
    OpenAILLM,
    RateLimit,
    RunError,
    Task,
    TaskGraph,
)
from orchestra_nb._actions import fit_to_budget, llm_messages
from tests.support.llm_server import LLMServer, Reply


def plan() -> TaskGraph:
    return TaskGraph(
        [
            Task("research", "Research", "Find market figures"),
            Task("competitors", "Competitors", "Compare the top makers"),
            Task("write", "Write", "Write the summary", dependencies=("research", "competitors")),
        ],
        goal="A report on solid-state batteries",
    )


async def test_llm_tasks_see_goal_task_and_inputs(llm_server):
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    run = await onb.run(plan(), llm=llm, store="memory://")
    assert run.ok
    assert isinstance(run.results["write"], Markdown)
    assert run.results["research"] == "Answer: ## Step: Research"
    by_step = {r["messages"][1]["content"].split("\n")[0]: r for r in llm_server.requests}
    write = by_step["## Step: Write"]["messages"]
    assert "Overall goal: A report on solid-state batteries" in write[0]["content"]
    assert "Write the summary" in write[1]["content"]
    assert "### Research\nAnswer: ## Step: Research" in write[1]["content"]
    assert "### Competitors\nAnswer: ## Step: Competitors" in write[1]["content"]
    assert run.usage.total_tokens == sum(u.total_tokens for u in run.usage_by_task.values()) > 0
    done = [e for e in run.events if e.kind == "done"]
    assert all(e.data["tokens"] > 0 for e in done)


async def test_changing_the_model_or_goal_changes_the_keys(llm_server):
    a = await onb.run(
        plan(),
        llm=OpenAILLM("m1", base_url=llm_server.url, api_key="k"),
        store="memory://shared-keys",
    )
    b = await onb.run(
        plan(),
        llm=OpenAILLM("m2", base_url=llm_server.url, api_key="k"),
        store="memory://shared-keys",
    )
    assert set(b.status.values()) == {"done"}
    assert a.keys != b.keys
    again = await onb.run(
        plan(),
        llm=OpenAILLM("m2", base_url=llm_server.url, api_key="k"),
        store="memory://shared-keys",
    )
    assert set(again.status.values()) == {"cached"}


def test_inputs_are_cut_to_the_token_budget():
    big = "x" * 10_000
    texts = fit_to_budget({"small": "tiny", "big1": big, "big2": big}, 1000)
    assert texts["small"] == "tiny"
    assert texts["big1"].startswith("x" * 1998)
    assert "more characters cut to fit the prompt" in texts["big1"]
    assert sum(len(t) for t in texts.values()) < 4000 + 200
    task = Task("t", "Step")
    messages = llm_messages(task, {"d": big}, goal="G", names={"d": "Dep"}, input_budget=100)
    assert len(messages[1]["content"]) < 600


async def test_missing_api_key_fails_before_anything_runs(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY"):
        onb.start(plan(), store="memory://")


async def test_rate_limited_llm_tasks_against_429s():
    with LLMServer(latency=0.05) as server:
        server.script(*[Reply(status=429, headers={"Retry-After": "0.2"}) for _ in range(4)])
        limit = RateLimit(max_concurrency=6)
        llm = OpenAILLM("m", base_url=server.url, api_key="k", rate_limit=limit, backoff=0.01)
        g = TaskGraph([Task(f"q{i}", f"Question {i}") for i in range(16)], goal="g")
        run = await onb.run(g, llm=llm, max_workers=8, store="memory://")
        assert run.ok
        assert llm.rate_limited == 4
        assert server.concurrency_peak <= 6
        assert limit.concurrency < 6  # narrowed by the 429s


async def test_llm_pool_bounds_llm_tasks_only():
    with LLMServer(latency=0.05) as server:
        llm = OpenAILLM("m", base_url=server.url, api_key="k")
        g = TaskGraph(
            [Task(f"q{i}") for i in range(8)]
            + [Task(f"p{i}", kind="python", function="noop") for i in range(4)],
            goal="g",
        )

        def noop():
            return 1

        run = await onb.run(
            g, llm=llm, max_workers=8, pools={"llm": 2}, functions={"noop": noop}, store="memory://"
        )
        assert run.ok
        assert server.concurrency_peak == 2


@onb.task_function(name="scale_numbers", version="1")
def scale_numbers(numbers, factor=2):
    return [n * factor for n in numbers]


async def test_registered_python_functions_get_inputs_and_params_by_name():
    seen_threads = []

    def numbers():
        seen_threads.append(threading.get_ident())
        return [1, 2, 3]

    async def total(scaled, task, inputs):
        return {"total": sum(scaled), "task": task.id, "from": sorted(inputs)}

    g = TaskGraph(
        [
            Task("numbers", kind="python"),
            Task(
                "scaled",
                kind="python",
                function="scale_numbers",
                dependencies=("numbers",),
                params={"factor": 10},
            ),
            Task("sum", kind="python", function="total", dependencies=("scaled",)),
        ]
    )
    run = await onb.run(g, functions=[numbers, total], store="memory://")
    assert run.ok, run.errors
    assert run.results["scaled"] == [10, 20, 30]
    assert run.results["sum"] == {"total": 60, "task": "sum", "from": ["scaled"]}
    assert threading.get_ident() not in seen_threads


async def test_function_argument_errors_name_what_is_missing():
    def needs(something):
        return something

    run = await onb.run(
        TaskGraph([Task("x", kind="python", function="needs")]),
        functions={"needs": needs},
        store="memory://",
    )
    assert run.errors["x"] == (
        "TypeError: function 'needs' needs argument 'something' but task 'x' has no input "
        "or param of that name (inputs: none)"
    )


async def test_unknown_functions_and_kinds_are_refused_up_front():
    g = TaskGraph([Task("a", kind="python", function="nope"), Task("b", kind="shell")])
    with pytest.raises(RunError) as info:
        onb.start(g, store="memory://")
    message = str(info.value)
    assert "task 'a' needs the Python function 'nope'" in message
    assert "task 'b' has unknown kind 'shell'" in message


async def test_editing_a_function_invalidates_its_results():
    def make(version):
        def chart():
            return version

        chart.__orchestra_version__ = version
        return chart

    g = TaskGraph([Task("c", kind="python", function="chart")])
    first = await onb.run(g, functions={"chart": make("1")}, store="memory://fn")
    same = await onb.run(g, functions={"chart": make("1")}, store="memory://fn")
    changed = await onb.run(g, functions={"chart": make("2")}, store="memory://fn")
    assert (first.status["c"], same.status["c"], changed.status["c"]) == ("done", "cached", "done")
    assert changed.results["c"] == "2"


async def test_report_assembles_sections_with_images_inline():
    png = Image(b"\x89PNG\r\n\x1a\nfake", "image/png")

    def chart():
        return png

    def table():
        import pandas as pd

        return pd.DataFrame({"maker": ["A", "B"], "share": [0.6, 0.4]})

    g = TaskGraph(
        [
            Task("intro", "Introduction", kind="python", function="intro"),
            Task("chart", "Market chart", kind="python"),
            Task("table", "Shares", kind="python"),
            Task(
                "report",
                "Battery report",
                "Everything in one place",
                kind="report",
                dependencies=("intro", "chart", "table"),
            ),
        ],
        goal="g",
    )
    run = await onb.run(
        g,
        functions={"intro": lambda: "Some **markdown**.", "chart": chart, "table": table},
        store="memory://",
    )
    report = run.results["report"]
    assert isinstance(report, Markdown)
    assert report.startswith(
        "# Battery report\n\nEverything in one place\n\n## Introduction\n\nSome **markdown**."
    )
    assert "## Market chart\n\n![Market chart](data:image/png;base64," in report
    assert "| maker | share |" in report


# --- tool arguments written by the planner ---------------------------------------------------


def test_llm_prompt_lists_the_arguments_with_references_named():
    task = Task(
        "speak",
        name="Text-to-Speech",
        dependencies=("caption",),
        arguments={"text": "${caption}", "voice": "female", "speed": 1.5},
    )
    messages = llm_messages(
        task, {"caption": "A dog"}, goal="g", names={"caption": "Image Captioning"}
    )
    assert (
        '## Arguments\n- text: the result of "Image Captioning"\n- voice: female\n- speed: 1.5'
        in messages[1]["content"]
    )
    listed = Task("t", arguments=["example.jpg", "${a} in French"], dependencies=("a",))
    prompt = llm_messages(listed, {"a": "x"}, goal="g", names={"a": "Caption"})[1]["content"]
    assert '## Arguments\n1. example.jpg\n2. the result of "Caption" in French' in prompt


async def test_llm_tasks_send_their_arguments(llm_server):
    g = TaskGraph.from_plan(
        {
            "task_nodes": [
                {"task": "Image Captioning", "arguments": ["example.jpg"]},
                {"task": "Translation", "arguments": ["<node-0>", "French"]},
            ]
        }
    )
    llm = OpenAILLM("m", base_url=llm_server.url, api_key="k")
    run = await onb.run(g, llm=llm, store="memory://")
    assert run.ok, run.errors
    sent = [r["messages"][1]["content"] for r in llm_server.requests]
    assert any('1. the result of "Image Captioning"\n2. French' in text for text in sent)


async def test_python_functions_get_their_arguments():
    def load(path, limit=10):
        return {"path": path, "limit": limit}

    def pick(rows, key, goal):
        return (rows["path"], key, goal)

    def join(first, second, *, sep="-"):
        return f"{first}{sep}{second}"

    g = TaskGraph.from_plan(
        {
            "goal": "G",
            "subtasks": [
                {"id": "load", "kind": "python", "arguments": {"path": "a.csv", "limit": 3}},
                {"id": "pick", "kind": "python", "arguments": {"rows": "${load}", "key": "k"}},
                {"id": "join", "kind": "python", "arguments": ["${pick}", "of ${load}", "+"]},
            ],
        }
    )
    assert g.tasks["pick"].dependencies == ("load",)
    assert g.tasks["join"].dependencies == ("pick", "load")
    run = await onb.run(g, functions=[load, pick, join], store="memory://")
    assert run.ok, run.errors
    assert run.results["load"] == {"path": "a.csv", "limit": 3}
    assert run.results["pick"] == ("a.csv", "k", "G")
    # "${pick}" alone is pick's result itself; "${load}" inside text is load's result as text
    assert run.results["join"] == (
        "('a.csv', 'k', 'G')+of {\n  \"path\": \"a.csv\",\n  \"limit\": 3\n}"
    )


async def test_too_many_positional_arguments_are_named():
    def one(x):
        return x

    g = TaskGraph([Task("a", kind="python", function="one", arguments=[1, 2])])
    run = await onb.run(g, functions=[one], store="memory://")
    assert run.errors["a"] == ("TypeError: function 'one' takes 1 argument(s) but task 'a' gives 2")
