"""Nothing silently lost: an answer cut anywhere gives the whole plan or says it was cut.

Real answers (the repository's recordings, answers from the corpus of real
models, each in the shapes models write) are cut at every 5 % of their length,
as a model that hits its token limit cuts them, and read whole and as a stream.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
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


def corpus_plans(count: int) -> list[str]:
    rows = [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines()]
    valid = [r["raw_text"] for r in rows if "invalid" not in r["truth"]]
    step = len(valid) // count
    chosen = valid[::step][:count]
    # models write the same JSON compact, indented and in fences with prose around it
    indented = [json.dumps(json.loads(t), indent=2) for t in chosen[: count // 2]]
    fenced = [f"Here is the plan:\n```json\n{t}\n```\nLet me know!" for t in indented[:5]]
    return chosen + indented + fenced


SEED_LIST = json.dumps(
    [
        {"id": f"t{i}", "name": f"Step {i}", "dependencies": [f"t{i - 1}"] if i else []}
        for i in range(8)
    ],
    indent=1,
)
NODES_EDGES = json.dumps(
    {
        "nodes": [{"id": c, "name": c.upper()} for c in "abcdef"],
        "edges": [{"source": a, "target": b} for a, b in ("ab", "bc", "cd", "de", "ef")],
    }
)
TEXT_PLAN = (
    'Thought: search first.\n1. search("solid-state batteries")\n2. search("EV makers")\n'
    '3. compare($1, $2)\n4. summarize("the comparison in $3")\n5. join()<END_OF_PLAN>\n'
)
ANSWERS = [*recorded_plans(), *corpus_plans(30), SEED_LIST, NODES_EDGES, TEXT_PLAN]


def outcome(text: str, whole: TaskGraph) -> str:
    try:
        graph = TaskGraph.from_plan(text)
    except PlanError as exc:
        message = str(exc)
        return "error" if "\n" not in message else "an error of several lines"
    if graph == whole:
        return "whole plan"
    return f"{len(graph)} of {len(whole)} tasks without a word"


def test_the_sweep_covers_real_answers():
    assert len(recorded_plans()) >= 2
    assert len(ANSWERS) >= 40


@pytest.mark.parametrize("answer", ANSWERS, ids=range(len(ANSWERS)))
def test_an_answer_cut_at_every_5_percent(answer):
    whole = TaskGraph.from_plan(answer)
    seen: Counter[str] = Counter()
    for percent in range(5, 100, 5):
        cut = answer[: len(answer) * percent // 100]
        seen[outcome(cut, whole)] += 1
        stream = PlanStream()
        streamed = stream.feed(cut)
        for task in streamed:  # a task handed out early is a task of the whole plan
            assert whole.tasks[task.id] == task
        with contextlib.suppress(PlanError):  # refused as a whole read refuses it
            assert stream.close() == whole
    assert set(seen) <= {"whole plan", "error"}, seen
    assert seen["error"] >= 1


def test_cut_answers_say_they_were_cut():
    answer = recorded_plans()[0]
    start = answer.index('"subtasks"')
    messages = set()
    for end in range(start, len(answer) - 40, 97):
        with pytest.raises(PlanError) as info:
            TaskGraph.from_plan(answer[:end])
        messages.add(str(info.value).split(":")[0])
    assert messages <= {
        "the plan has no tasks",
        *(f"the answer is cut off after {n} complete task(s)" for n in range(1, 10)),
    }
    assert len(messages) >= 5
