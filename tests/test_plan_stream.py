"""PlanStream: tasks handed out as their objects complete, and the same plan as a whole read."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from orchestra_nb import PlanError, PlanStream, TaskGraph

ROOT = Path(__file__).parent.parent
CORPUS = Path(__file__).parent / "data" / "llm-plans" / "taskbench-answers.jsonl"


def recorded_plans() -> list[str]:
    """Whole plans the recordings hold (a revision's answer lists only the steps still
    to run: it depends on finished steps that are not in it)."""
    answers = []
    for path in sorted((ROOT / "notebooks" / "recordings").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        answers += [
            e["response"]
            for e in data["entries"]
            if e.get("schema") and not e["messages"][0]["content"].startswith("You repair a plan")
        ]
    return answers


def stream_in(text: str, cuts: list[int]) -> tuple[list[tuple[int, str]], TaskGraph]:
    """Feed ``text`` cut at ``cuts``; (offset at which each task came, id) and the graph."""
    stream = PlanStream()
    came: list[tuple[int, str]] = []
    start = 0
    for end in [*cuts, len(text)]:
        came += [(end, task.id) for task in stream.feed(text[start:end])]
        start = end
    return came, stream.close()


def check_order(came: list[tuple[int, str]], graph: TaskGraph) -> None:
    handed = [tid for _offset, tid in came]
    assert len(handed) == len(set(handed))
    for i, tid in enumerate(handed):
        assert set(graph.tasks[tid].dependencies) <= set(handed[:i])  # dependencies first


def test_every_split_point_of_the_recordings():
    for text in recorded_plans():
        whole = TaskGraph.from_plan(text)
        for cut in range(len(text) + 1):
            came, graph = stream_in(text, [cut])
            assert graph == whole
            assert sorted(tid for _o, tid in came) == sorted(whole.tasks)  # all before the end
            check_order(came, graph)


def test_each_task_comes_the_moment_its_object_closes():
    text = recorded_plans()[0]
    whole = TaskGraph.from_plan(text)
    came, graph = stream_in(text, list(range(1, len(text))))  # one character at a time
    assert graph == whole
    decoder = json.JSONDecoder()
    for offset, tid in came:
        start = text.index(f'{{"id": "{tid}"')
        _task, end = decoder.raw_decode(text, start)
        assert offset == end  # handed out with the closing brace, not a character later


@pytest.mark.parametrize("seed", range(5))
def test_random_chunks_of_real_answers(seed):
    rng = random.Random(seed)
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    texts = recorded_plans() + [r["raw_text"] for r in rng.sample(rows, 25)]
    for text in texts:
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 60))))
        try:
            whole = TaskGraph.from_plan(text)
        except PlanError as exc:
            refused = str(exc)
            with pytest.raises(PlanError) as info:
                stream_in(text, cuts)
            assert str(info.value) == refused
            continue
        came, graph = stream_in(text, cuts)
        assert graph == whole
        check_order(came, graph)


def test_graph_shaped_plans_come_when_the_graph_closes():
    text = json.dumps(
        {
            "nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}],
            "edges": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
        }
    )
    came, graph = stream_in(text, list(range(1, len(text))))
    assert [tid for _o, tid in came] == ["a", "b", "c"]
    assert {offset for offset, _tid in came} == {len(text)}  # edges may change them until then
    assert graph.edges == [("a", "b"), ("b", "c")]


def test_text_plans_stream_line_by_line():
    text = '1. search("a")\n2. search("b")\n3. compare($1, $2)\n4. join()\n'
    came, graph = stream_in(text, list(range(1, len(text))))
    ends = [text.index("\n", text.index(f"{n}. ")) + 1 for n in (1, 2, 3)]
    assert came == [(ends[0], "1"), (ends[1], "2"), (ends[2], "3")]
    assert graph.tasks["3"].dependencies == ("1", "2")


def test_a_task_waits_for_a_task_it_names_that_comes_later():
    text = json.dumps({"subtasks": [{"id": "b", "dependencies": ["a"]}, {"id": "a"}, {"id": "c"}]})
    came, _graph = stream_in(text, list(range(1, len(text))))
    assert [tid for _o, tid in came] == ["a", "b", "c"]
    a_end = text.index('{"id": "a"}') + len('{"id": "a"}')
    assert came[0][0] == came[1][0] == a_end  # b came with a, the moment a was complete


def test_an_invalid_finished_plan_is_refused_as_a_whole_read_refuses_it():
    text = json.dumps([{"id": "a", "dependencies": ["b"]}, {"id": "b", "dependencies": ["a"]}])
    stream = PlanStream()
    assert stream.feed(text) == []  # neither can start: each waits for the other
    with pytest.raises(PlanError, match="dependency cycle"):
        stream.close()


def test_a_list_after_the_tasks_that_changes_one_already_handed_out_is_refused():
    text = json.dumps({"tasks": [{"id": "a"}, {"id": "b"}], "edges": [["a", "b"]]})
    stream = PlanStream()
    assert [t.id for t in stream.feed(text)] == ["a", "b"]
    with pytest.raises(PlanError, match="task 'b' was read while the plan streamed"):
        stream.close()
    assert TaskGraph.from_plan(text).tasks["b"].dependencies == ("a",)  # read whole, it is fine


def test_the_stream_is_bounded():
    stream = PlanStream(max_chars=1000)
    stream.feed("x" * 1000)
    with pytest.raises(PlanError, match=r"the answer is 1001 characters, more than the 1000"):
        stream.feed("y")
    deep = PlanStream()
    with pytest.raises(PlanError, match="more than 64 levels deep"):
        deep.feed("[" * 100_000)


def test_feeding_after_close_is_a_mistake():
    stream = PlanStream()
    stream.feed('[{"id": "a"}]')
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.feed("more")
