"""Graph-shaped plans (TaskBench, node/edge graphs, LLMCompiler text) through TaskGraph.from_plan.

The corpus test reads 237 answers written by real models (tests/data/llm-plans) and
checks each against an independent reading of it.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from orchestra_nb import PlanError, Task, TaskGraph, cache_key

CORPUS = Path(__file__).parent / "data" / "llm-plans" / "taskbench-answers.jsonl"


def deps(g: TaskGraph) -> dict[str, tuple[str, ...]]:
    return {tid: t.dependencies for tid, t in g.tasks.items()}


def refusal(data) -> str:
    with pytest.raises(PlanError) as info:
        TaskGraph.from_plan(data)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- the corpus of real answers -----------------------------------------------------------


def _defect_words(reason: str) -> list[str]:
    """What a refusal must say to name the defect the independent reading found."""
    if "uses its own output" in reason:
        return ["uses its own output <node-"]
    if "cycle" in reason:
        return ["cycle"]
    quoted = reason.split("'")[1]
    if "names no task node" in reason:
        return [f"{quoted!r} names no task node"]
    return [f"{quoted!r} names", "task nodes (ambiguous)"]


def test_every_answer_of_the_corpus():
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 237
    figures: Counter[str] = Counter()
    wrong = []
    for row in rows:
        truth = row["truth"]
        try:
            graph = TaskGraph.from_plan(row["raw_text"])
        except PlanError as exc:
            message = str(exc)
            named = "invalid" in truth and all(
                word in message for word in _defect_words(truth["invalid"])
            )
            if named and "\n" not in message:
                figures["invalid refused for its defect"] += 1
                continue
            wrong.append((row["case_id"], truth, message))
            continue
        if "invalid" in truth:
            wrong.append((row["case_id"], truth, "accepted"))
            continue
        position = {tid: i for i, tid in enumerate(graph.tasks)}
        edges = sorted((position[a], position[b]) for a, b in graph.edges)
        if len(graph) == truth["n_tasks"] and edges == sorted(map(tuple, truth["edges"])):
            figures["valid accepted with its edges"] += 1
        else:
            wrong.append((row["case_id"], truth, edges))
    assert wrong == []
    assert figures == {"valid accepted with its edges": 187, "invalid refused for its defect": 50}


# --- TaskBench ----------------------------------------------------------------------------

TASKBENCH = {
    "task_steps": [
        "Step 1: Search the web for the topic",
        "Step 2: Add reverb to the narration",
        "Step 3: Add an echo on top",
    ],
    "task_nodes": [
        {"task": "Text Search", "arguments": ["polar bears"]},
        {"task": "Audio Effects", "arguments": ["<node-0>", "reverb"]},
        {"task": "Audio Effects", "arguments": [{"name": "audio", "value": "<node-1>"}]},
    ],
    "task_links": [
        {"source": "Text Search", "target": "Audio Effects"},
    ],
}


def test_taskbench_answer_with_repeated_task_names():
    # the link names "Audio Effects", which two nodes share: an ambiguous link is refused
    assert "'Audio Effects' names 2 task nodes (ambiguous)" in refusal(TASKBENCH)
    plan = {**TASKBENCH, "task_links": []}
    g = TaskGraph.from_plan(json.dumps(plan))
    assert list(g.tasks) == ["Text_Search", "Audio_Effects", "Audio_Effects_2"]
    assert deps(g) == {
        "Text_Search": (),
        "Audio_Effects": ("Text_Search",),
        "Audio_Effects_2": ("Audio_Effects",),
    }
    first, second = g.tasks["Audio_Effects"], g.tasks["Audio_Effects_2"]
    assert (first.name, second.name) == ("Audio Effects", "Audio Effects")
    assert first.description == "Add reverb to the narration"
    assert first.arguments == ["${Text_Search}", "reverb"]
    assert second.arguments == {"audio": "${Audio_Effects}"}  # name/value pairs, named


def test_taskbench_links_add_to_node_references():
    plan = {
        "task_nodes": [
            {"task": "Image-to-Text", "arguments": ["example.jpg"]},
            {"task": "Summarization", "arguments": ["<node-0>"]},
            {"task": "Translation", "arguments": ["<node-1>", "French"]},
        ],
        "task_links": [
            {"source": "Image-to-Text", "target": "Summarization"},
            {"source": "Image-to-Text", "target": "Translation"},
        ],
    }
    g = TaskGraph.from_plan(plan)
    assert deps(g) == {
        "Image-to-Text": (),
        "Summarization": ("Image-to-Text",),
        "Translation": ("Summarization", "Image-to-Text"),
    }


def test_minimax_answer_with_dependencies_only_as_node_arguments():
    answer = (
        '{"task_steps": ["Step 1: Extract the audio", "Step 2: Reduce noise", "Step 3: Reverb"], '
        '"task_nodes": [{"task": "Video-to-Audio", "arguments": ["example.mp4"]}, '
        '{"task": "Audio Noise Reduction", "arguments": ["<node-0>"]}, '
        '{"task": "Audio Effects", "arguments": ["<node-1>", "reverb"]}]}'
    )
    g = TaskGraph.from_plan(answer)
    assert deps(g) == {
        "Video-to-Audio": (),
        "Audio_Noise_Reduction": ("Video-to-Audio",),
        "Audio_Effects": ("Audio_Noise_Reduction",),
    }
    assert g.tasks["Audio_Effects"].arguments == ["${Audio_Noise_Reduction}", "reverb"]


def test_node_references_counted_from_one_when_the_answer_shows_it():
    plan = {
        "task_nodes": [
            {"task": "A", "arguments": ["x"]},
            {"task": "B", "arguments": ["<node-3>"]},  # <node-3> of 3 nodes: C, counted from 1
            {"task": "C", "arguments": ["<node-1>"]},
        ]
    }
    assert deps(TaskGraph.from_plan(plan)) == {"A": (), "B": ("C",), "C": ("A",)}


def test_ambiguous_node_references_are_refused_naming_both_readings():
    plan = {
        "task_nodes": [
            {"task": "Image-to-Text", "arguments": ["example.jpg"]},
            {"task": "Question Answering", "arguments": ["<node-1>"]},
            {"task": "Translation", "arguments": ["<node-2>", "French"]},
        ]
    }
    message = refusal(plan)
    assert message.startswith("the <node-j> references are ambiguous: counted from 0")
    assert "node 1 (Question Answering) uses its own output <node-1>" in message
    assert "counted from 1 they would hold" in message


@pytest.mark.parametrize(
    ("links", "expected"),
    [
        ([{"source": "A", "target": "Output"}], "task_links[0].target 'Output' names no task node"),
        ([{"source": "A", "target": "A"}], "task_links[0] links node 0 (A) to itself"),
        ([{"source": "A"}], "task_links[0].target is missing"),
        ("A -> B", "task_links must be a list of {source, target} objects"),
    ],
)
def test_bad_taskbench_links(links, expected):
    plan = {"task_nodes": [{"task": "A"}, {"task": "B"}], "task_links": links}
    assert refusal(plan) == expected


def test_taskbench_self_reference_and_cycle():
    self_use = {"task_nodes": [{"task": "A", "arguments": ["<node-0>"]}]}
    assert refusal(self_use) == "node 0 (A) uses its own output <node-0>"
    cycle = {
        "task_nodes": [
            {"task": "A", "arguments": []},
            {"task": "B", "arguments": ["<node-2>"]},
            {"task": "C", "arguments": ["<node-1>", "<node-0>"]},
        ]
    }
    message = refusal(cycle)
    assert message.startswith("the plan has a dependency cycle: ")
    assert set(message.split(": ")[1].split(" -> ")) == {"B", "C"}


# --- edges beside a task list ---------------------------------------------------------------


@pytest.mark.parametrize(
    "plan",
    [
        {
            "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
        },
        {
            "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
            "links": [{"from": "a", "to": "b"}, {"from": "b", "to": "c"}],
        },
        {"tasks": [{"id": "a"}, {"id": "b"}, {"id": "c"}], "edges": [["a", "b"], ["b", "c"]]},
        {
            "nodes": [{"name": "Collect"}, {"name": "Analyse"}, {"name": "Write"}],
            "edges": [{"source": "Collect", "target": "Analyse"}, ["analyse", "write"]],
        },
    ],
)
def test_node_edge_graphs(plan):
    g = TaskGraph.from_plan(json.dumps(plan))
    first, second, third = g.tasks
    assert deps(g) == {first: (), second: (first,), third: (second,)}


def test_edges_merge_with_listed_dependencies():
    plan = {
        "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c", "dependencies": ["a"]}],
        "edges": [{"source": "b", "target": "c"}, {"source": "a", "target": "c"}],
    }
    assert deps(TaskGraph.from_plan(plan)) == {"a": (), "b": (), "c": ("a", "b")}


def test_bad_edges_are_named():
    nodes = [{"id": "a", "name": "Same"}, {"id": "b", "name": "Same"}]
    assert refusal({"nodes": nodes, "edges": [{"source": "x", "target": "a"}]}) == (
        "edges[0].source 'x' names no task"
    )
    assert refusal({"nodes": nodes, "edges": [{"source": "Same", "target": "a"}]}) == (
        "edges[0].source 'Same' names 2 tasks (ambiguous)"
    )
    assert refusal({"nodes": nodes, "edges": [{"source": "a", "target": "a"}]}) == (
        "edges[0] links task 'a' to itself"
    )
    cycle = {"nodes": [{"id": "a"}, {"id": "b"}], "edges": [["a", "b"], ["b", "a"]]}
    assert "dependency cycle" in refusal(cycle)


def test_a_links_list_that_holds_no_edges_is_left_alone():
    plan = {"tasks": [{"id": "a"}], "links": ["https://example.com/source"]}
    g = TaskGraph.from_plan(plan)
    assert list(g.tasks) == ["a"]


# --- LLMCompiler text plans ------------------------------------------------------------------

COMPILER = """\
Question: Which magazine was started first?
1. search("Arthur's Magazine")
2. search("First for Women (magazine)")
Thought: compare the two founding dates.
3. compare($1, ${2}, unit="year")
4. join()<END_OF_PLAN>
"""


def test_llmcompiler_text_plan():
    g = TaskGraph.from_plan(COMPILER)
    assert deps(g) == {"1": (), "2": (), "3": ("1", "2")}
    one, three = g.tasks["1"], g.tasks["3"]
    assert (one.name, one.description, one.arguments) == (
        "search",
        'search("Arthur\'s Magazine")',
        ["Arthur's Magazine"],
    )
    assert three.description == "compare the two founding dates."
    assert three.arguments == {"args": ["${1}", "${2}"], "unit": "year"}


def test_llmcompiler_references_inside_strings_and_fences():
    text = '```\n1. search("bears")\n2. summarize("the facts in $1")\n3. join()\n```'
    g = TaskGraph.from_plan(text)
    assert deps(g) == {"1": (), "2": ("1",)}
    assert g.tasks["2"].arguments == ["the facts in ${1}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('1. search("a")\n2. search("b', "does not end with join(): it looks cut off after step 1"),
        ('1. search("a")\n', "does not end with join(): it looks cut off after step 1"),
        ('1. search("a")\nsearch("b")\n2. join()', "line 2 looks like a step but is not"),
        ('1. search("a")\n2. lookup($1, $2)\n3. join()', "task '2' depends on itself"),
        ('1. search("a")\n2. lookup($7)\n3. join()', "task '2' depends on unknown task '7'"),
        ("1. join()", "the plan has no tasks"),
    ],
)
def test_bad_text_plans(text, expected):
    assert expected in refusal(text)


# --- objects written without a list, stray and missing brackets ---------------------------------


HUGGINGGPT_WITHOUT_BRACKET = (
    '{"task": "image-to-text", "id": 0, "dep": [-1], "args": {"image": "e1.jpg"}}, '
    '{"task": "text-to-speech", "id": 1, "dep": [0], "args": {"text": "<GENERATED>-0"}}, '
    '{"task": "audio-classification", "id": 2, "dep": [1], "args": {"audio": "<GENERATED>-1"}}]'
)


def test_hugginggpt_objects_without_the_opening_bracket():
    g = TaskGraph.from_plan(HUGGINGGPT_WITHOUT_BRACKET)
    assert deps(g) == {"0": (), "1": ("0",), "2": ("1",)}
    assert g.tasks["2"].name == "audio-classification"


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "a"}\n{"id": "b", "dependencies": ["a"]}\n{"id": "c", "dependencies": ["b"]}',
        '{"id": "a"}, {"id": "b", "dependencies": ["a"]}, {"id": "c", "dependencies": ["b"]}',
        'First: {"id": "a"}\nThen: {"id": "b", "dependencies": ["a"]}\nLast: '
        '{"id": "c", "dependencies": ["b"]}\nThat is all.',
        '```json\n{"id": "a"}\n```\n```json\n{"id": "b", "dependencies": ["a"]}\n```\n'
        '```json\n{"id": "c", "dependencies": ["b"]}\n```',
        "{'id': 'a'} {'id': 'b', 'dependencies': ['a']} {'id': 'c', 'dependencies': ['b']}",
    ],
)
def test_concatenated_task_objects_are_all_read(text):
    assert deps(TaskGraph.from_plan(text)) == {"a": (), "b": ("a",), "c": ("b",)}


@pytest.mark.parametrize(
    "text",
    [
        '{"subtasks": [{"id": "a"}}, {"id": "b"}, {"id": "c"}]}',  # a stray brace
        '[{"id": "a"}, {"id": "b", {"id": "c"}]',  # b never closed before c starts
        '[{"id": "a"}, {"id": "b"} {"id": "c"}]',  # a missing comma
        '{"subtasks": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}}]',  # closers left over
        '{ {"id": "a"}, {"id": "b"}, {"id": "c"} }',  # a set of objects
    ],
)
def test_stray_and_missing_brackets_keep_every_task(text):
    assert list(TaskGraph.from_plan(text).tasks) == ["a", "b", "c"]


def test_two_different_plans_are_refused_one_repeated_is_read():
    one = json.dumps({"subtasks": [{"id": "a"}, {"id": "b"}]})
    other = json.dumps({"subtasks": [{"id": "x"}]})
    assert refusal(f"Draft: {one}\nFinal: {other}").startswith(
        "the answer holds 2 different plans (at characters 7, "
    )
    assert list(TaskGraph.from_plan(f"{one}\nAgain: {one}").tasks) == ["a", "b"]


def test_task_objects_outside_the_task_list_are_named():
    text = '{"subtasks": [{"id": "a"}, {"id": "b"}]}\n{"id": "c", "name": "Write the report"}'
    assert refusal(text) == (
        "1 task object(s) are outside the plan's task list (from character 41): 'Write the report'"
    )


# --- arguments on tasks ------------------------------------------------------------------------


def test_arguments_round_trip_and_are_part_of_the_definition():
    g = TaskGraph.from_plan(
        {
            "subtasks": [
                {"id": "fetch", "arguments": {"url": "https://example.com"}},
                {"id": "sum", "arguments": ["${fetch}", 3]},
            ]
        }
    )
    assert deps(g) == {"fetch": (), "sum": ("fetch",)}  # a reference is a dependency
    plan = g.to_plan()
    assert plan["subtasks"][1]["arguments"] == ["${fetch}", 3]
    assert TaskGraph.from_plan(json.dumps(plan)) == g
    task = g.tasks["sum"]
    assert task.definition()["arguments"] == ["${fetch}", 3]
    changed = task.replace(arguments=["${fetch}", 4])
    assert cache_key(changed, {"fetch": "k1"}) != cache_key(task, {"fetch": "k1"})


def test_tasks_without_arguments_keep_their_definition_and_key():
    task = Task("a", name="A", description="do it")
    assert "arguments" not in task.definition()
    assert "arguments" not in task.to_dict()
    assert "arguments" not in repr(task)
    assert repr(task.replace(arguments=[1])).endswith(", extra={}, arguments=[1])")
    assert task.arguments == []
    assert Task("a", name="A", description="do it", arguments=None) == task


def test_text_that_looks_like_a_reference_but_names_no_task_stays_text():
    g = TaskGraph.from_plan([{"id": "a", "arguments": ["${HOME}/data"]}])
    assert g.tasks["a"].arguments == ["${HOME}/data"] and g.tasks["a"].dependencies == ()


def test_arguments_of_the_wrong_type_are_refused():
    with pytest.raises(PlanError, match=r"task 'a': arguments must be a list or an object"):
        Task("a", arguments=object())  # type: ignore[arg-type]
