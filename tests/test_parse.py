"""Every plan form real models write, and every refusal, through TaskGraph.from_plan."""

from __future__ import annotations

import json
import random
import string
import textwrap
import time
import tracemalloc

import pytest

from orchestra_nb import PlanError, TaskGraph
from orchestra_nb._parse import MAX_REPAIR_CHARS, parse_duration_minutes

SEED = {
    "subtasks": [
        {
            "id": "task_1",
            "name": "Collect market data",
            "description": "Gather sales figures",
            "dependencies": [],
            "estimated_time": 15,
        },
        {
            "id": "task_2",
            "name": "Analyze competitors",
            "description": "Compare the top five",
            "dependencies": ["task_1"],
            "estimated_time": 30,
        },
        {
            "id": "task_3",
            "name": "Write report",
            "description": "Compile findings",
            "dependencies": ["task_1", "task_2"],
            "estimated_time": 20,
        },
    ]
}


def deps(g: TaskGraph) -> dict[str, tuple[str, ...]]:
    return {tid: t.dependencies for tid, t in g.tasks.items()}


def test_seed_format_dict_text_and_list_agree():
    from_dict = TaskGraph.from_plan(SEED)
    assert TaskGraph.from_plan(json.dumps(SEED)) == from_dict
    assert TaskGraph.from_plan(SEED["subtasks"]) == from_dict
    assert TaskGraph.from_plan(json.dumps(SEED).encode()) == from_dict
    assert deps(from_dict) == {
        "task_1": (),
        "task_2": ("task_1",),
        "task_3": ("task_1", "task_2"),
    }
    assert from_dict.tasks["task_2"].estimated_time == 30.0
    assert from_dict.tasks["task_1"].name == "Collect market data"


def test_fenced_json_with_prose_around_it():
    answer = "Sure! Here is the plan:\n```json\n" + json.dumps(SEED, indent=2) + "\n```\nGood luck!"
    assert TaskGraph.from_plan(answer) == TaskGraph.from_plan(SEED)


def test_unlabelled_fence_and_prose_without_fence():
    body = json.dumps(SEED)
    assert TaskGraph.from_plan(f"```\n{body}\n```") == TaskGraph.from_plan(SEED)
    assert TaskGraph.from_plan(f"The plan is {body} as requested.") == TaskGraph.from_plan(SEED)


def test_unclosed_fence():
    answer = "```json\n" + json.dumps(SEED)
    assert len(TaskGraph.from_plan(answer)) == 3


def test_trailing_commas_and_single_quotes_are_repaired():
    answer = textwrap.dedent(
        """
        {'subtasks': [
            {'id': 'a', 'name': 'First', 'dependencies': [],},
            {'id': 'b', 'name': "Second", 'dependencies': ['a',],},
        ],}
        """
    )
    g = TaskGraph.from_plan(answer)
    assert deps(g) == {"a": (), "b": ("a",)}
    assert g.tasks["b"].name == "Second"


def test_truncated_json_is_refused_not_mended():
    # a cut answer cannot say how many tasks were still to come: mending it would run a
    # shorter plan without a word, so it is refused with how far it got
    answer = '{"subtasks": [{"id": "a", "name": "First"}, {"id": "b", "dependencies": ["a"]'
    with pytest.raises(PlanError, match=r"cut off after 1 complete task\(s\)"):
        TaskGraph.from_plan(answer)


def test_tasks_key_steps_key_and_nested_plan():
    items = [{"id": "x"}, {"id": "y", "dependencies": ["x"]}]
    for data in (
        {"tasks": items},
        {"steps": items},
        {"plan": {"subtasks": items}},
        {"plan": items, "goal": "g"},
    ):
        assert deps(TaskGraph.from_plan(data)) == {"x": (), "y": ("x",)}


def test_mapping_of_id_to_task():
    g = TaskGraph.from_plan({"subtasks": {"a": {"name": "A"}, "b": {"dependencies": ["a"]}}})
    assert deps(g) == {"a": (), "b": ("a",)}
    assert g.tasks["a"].name == "A"


def test_integer_ids_and_integer_dependencies():
    g = TaskGraph.from_plan(
        [{"id": 1}, {"id": 2, "dependencies": [1]}, {"id": 3, "dependencies": 2}]
    )
    assert deps(g) == {"1": (), "2": ("1",), "3": ("2",)}


def test_dependencies_by_name():
    g = TaskGraph.from_plan(
        [
            {"id": "t1", "name": "Collect data"},
            {"id": "t2", "name": "Analyze", "dependencies": ["Collect data"]},
            {"id": "t3", "name": "Write", "dependencies": ["collect DATA", "analyze"]},
        ]
    )
    assert deps(g) == {"t1": (), "t2": ("t1",), "t3": ("t1", "t2")}


def test_dependencies_as_comma_string_null_missing_and_duplicated():
    g = TaskGraph.from_plan(
        [
            {"id": "a", "dependencies": None},
            {"id": "b"},
            {"id": "c", "dependencies": "a, b"},
            {"id": "d", "dependencies": ["a", "a", "c", "a"]},
            {"id": "e", "dependencies": "none"},
            {"id": "f", "dependencies": ""},
        ]
    )
    assert deps(g) == {
        "a": (),
        "b": (),
        "c": ("a", "b"),
        "d": ("a", "c"),
        "e": (),
        "f": (),
    }


def test_task_numbers_in_references():
    g = TaskGraph.from_plan(
        [{"id": 1, "name": "One"}, {"id": 2, "dependencies": ["task 1"]}, {"id": 3, "deps": "#2"}]
    )
    assert deps(g) == {"1": (), "2": ("1",), "3": ("2",)}


def test_hugginggpt_entries():
    answer = (
        '[{"task": "image-to-text", "id": 0, "dep": [-1], "args": {"image": "e1.jpg"}}, '
        '{"task": "text-to-speech", "id": 1, "dep": [0], "args": {"text": "<GENERATED>-0"}}]'
    )
    g = TaskGraph.from_plan(answer)
    assert deps(g) == {"0": (), "1": ("0",)}
    assert g.tasks["0"].name == "image-to-text"
    assert g.tasks["0"].description == "image: e1.jpg"
    assert g.tasks["1"].extra["args"] == {"text": "<GENERATED>-0"}


@pytest.mark.parametrize(
    ("written", "minutes"),
    [
        (15, 15.0),
        (2.5, 2.5),
        ("15", 15.0),
        ("15 minutes", 15.0),
        ("15 min", 15.0),
        ("1h", 60.0),
        ("1.5 hours", 90.0),
        ("2h30m", 150.0),
        ("1 hour 30 minutes", 90.0),
        ("90s", 1.5),
        ("10-20 minutes", 15.0),
        ("15分钟", 15.0),
        ("2小时", 120.0),
        ("半小时", 30.0),
        ("1 day", 1440.0),
        ("PT1H30M", 90.0),
        (None, None),
        ("unknown", None),
    ],
)
def test_estimated_time_forms(written, minutes):
    g = TaskGraph.from_plan([{"id": "a", "estimated_time": written}])
    assert g.tasks["a"].estimated_time == minutes
    assert parse_duration_minutes(written) == minutes


def test_estimated_time_alias_fields():
    g = TaskGraph.from_plan([{"id": "a", "duration": "1h"}, {"id": "b", "estimatedTime": 5}])
    assert g.tasks["a"].estimated_time == 60.0
    assert g.tasks["b"].estimated_time == 5.0


def test_bad_durations_are_named():
    with pytest.raises(PlanError, match=r"task 'a': estimated_time is not a duration: 'soon'"):
        TaskGraph.from_plan([{"id": "a", "estimated_time": "soon"}])
    with pytest.raises(PlanError, match=r"non-negative"):
        TaskGraph.from_plan([{"id": "a", "estimated_time": -5}])
    with pytest.raises(PlanError, match=r"unknown unit 'fortnights'"):
        TaskGraph.from_plan([{"id": "a", "estimated_time": "2 fortnights"}])


def test_kind_and_scheduling_fields():
    g = TaskGraph.from_plan(
        [
            {"id": "a", "kind": "Python", "function": "load_data", "priority": 5},
            {"id": "b", "type": "llm", "resources": ["llm"], "retries": 2, "timeout": "2 min"},
            {"id": "c", "kind": "report", "params": {"temperature": 0}},
        ]
    )
    a, b, c = (g.tasks[x] for x in "abc")
    assert (a.kind, a.function, a.priority) == ("python", "load_data", 5.0)
    assert (b.kind, b.resources, b.retries, b.timeout) == ("llm", {"llm": 1}, 2, 120.0)
    assert (c.kind, c.params) == ("report", {"temperature": 0})


def test_unknown_fields_survive_a_round_trip():
    g = TaskGraph.from_plan([{"id": "a", "runtime_s": 2.5, "owner": "ana"}])
    assert g.tasks["a"].extra == {"runtime_s": 2.5, "owner": "ana"}
    assert g.to_plan()["subtasks"][0]["runtime_s"] == 2.5
    assert TaskGraph.from_plan(g.to_plan()) == g


def test_missing_ids_get_positional_ones():
    g = TaskGraph.from_plan([{"name": "First"}, {"name": "Second", "dependencies": ["First"]}])
    assert deps(g) == {"task_1": (), "task_2": ("task_1",)}


def test_unsafe_ids_become_safe_and_stay_unique():
    g = TaskGraph.from_plan(
        [
            {"id": "Market research / EU!"},
            {"id": "Market research / EU?", "dependencies": ["Market research / EU!"]},
            {"id": "../../etc/passwd"},
            {"id": "市场调研"},
            {"id": "x" * 200},
        ]
    )
    ids = list(g.tasks)
    assert ids[0] == "Market_research_EU"
    assert ids[1] == "Market_research_EU_2"
    assert g.tasks[ids[1]].dependencies == (ids[0],)
    assert ids[2] == "etc_passwd"
    assert ids[3].startswith("task_")
    assert len(ids[4]) <= 64
    for tid in ids:
        assert "/" not in tid and not tid.startswith(".")


def test_goal_and_name_are_kept():
    g = TaskGraph.from_plan({"name": "r", "goal": "Write a report", "subtasks": [{"id": "a"}]})
    assert (g.name, g.goal) == ("r", "Write a report")
    assert TaskGraph.from_plan([{"id": "a"}], goal="G").goal == "G"


# --- refusals ---------------------------------------------------------------------------


def refusal(data) -> PlanError:
    with pytest.raises(PlanError) as info:
        TaskGraph.from_plan(data)
    assert "\n" not in str(info.value)
    return info.value


def test_cycle_is_named():
    err = refusal(
        [
            {"id": "a", "dependencies": ["c"]},
            {"id": "b", "dependencies": ["a"]},
            {"id": "c", "dependencies": ["b"]},
            {"id": "d"},
        ]
    )
    assert "dependency cycle" in str(err)
    assert set(err.ids) == {"a", "b", "c"}
    cycle = str(err).split(": ", 1)[1].split(" -> ")
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}


def test_self_dependency():
    err = refusal([{"id": "a", "dependencies": ["a"]}])
    assert str(err) == "task 'a' depends on itself"
    assert err.ids == ("a",)


def test_unknown_dependency():
    err = refusal([{"id": "a"}, {"id": "b", "dependencies": ["a", "ghost"]}])
    assert str(err) == "task 'b' depends on unknown task 'ghost'"
    assert err.ids == ("b", "ghost")


def test_several_problems_in_one_line():
    err = refusal([{"id": "a", "dependencies": ["a"]}, {"id": "b", "dependencies": ["zz"]}])
    assert str(err).startswith("the plan has 2 problems: ")
    assert set(err.ids) == {"a", "b", "zz"}


def test_duplicate_ids():
    err = refusal([{"id": "a"}, {"id": "b"}, {"id": "a"}])
    assert str(err) == "duplicate task id 'a' (entries 1 and 3)"
    assert err.ids == ("a",)


@pytest.mark.parametrize("data", [[], {"subtasks": []}, "[]", '{"tasks": []}'])
def test_empty_plan(data):
    assert str(refusal(data)) == "the plan has no tasks"


def test_entry_that_is_not_an_object():
    assert str(refusal([{"id": "a"}, "do the thing"])) == (
        "plan entry 2 is not an object: '\"do the thing\"'"
    )


@pytest.mark.parametrize(
    "answer",
    [
        "I'm sorry, but I can't help with that request.",
        "As an AI model I cannot plan this.",
        "",
        "   ",
        "Sorry [I cannot] do that",
    ],
)
def test_non_json_answers(answer):
    message = str(refusal(answer))
    assert "JSON plan" in message or "empty" in message


def test_wrong_top_level_types():
    assert "no task list" in str(refusal({"message": "hello"}))
    assert "not int" in str(refusal(42))


def test_ten_megabytes_of_garbage_is_refused_fast_and_small():
    rng = random.Random(7)
    garbage = "".join(rng.choices(string.printable, k=10_000_000))
    tracemalloc.start()
    started = time.perf_counter()
    err = refusal(garbage)
    elapsed = time.perf_counter() - started
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "too large to repair" in str(err)
    assert elapsed < 5  # generous: it takes about 0.02 s here
    assert peak < 40_000_000  # a copy or two of the 10 MB input, no more


def test_repair_limit_is_on_the_json_not_the_prose():
    body = json.dumps(SEED)
    prose = "Notes: " + "x" * (MAX_REPAIR_CHARS * 2) + "\n"
    # valid JSON after a lot of prose is still found by the strict path
    assert len(TaskGraph.from_plan(prose + "```json\n" + body + "\n```")) == 3


def test_five_thousand_task_plan_parses():
    plan = {
        "subtasks": [
            {
                "id": f"t{i}",
                "name": f"Task {i}",
                "description": "work",
                "dependencies": sorted({f"t{j}" for j in (i - 1, i // 2) if 0 <= j < i}),
                "estimated_time": i % 7,
            }
            for i in range(5000)
        ]
    }
    g = TaskGraph.from_plan(json.dumps(plan))
    assert len(g) == 5000
    assert g.tasks["t4999"].dependencies == ("t2499", "t4998")
