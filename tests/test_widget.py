"""The widget from Python, setting synced traits exactly as the front end does."""

from __future__ import annotations

import asyncio
import time

import pytest

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph
from orchestra_nb.jupyter._widget import DagWidget


def diamond() -> TaskGraph:
    return TaskGraph(
        [
            Task("a", "Collect", "Gather the data"),
            Task("b", "Analyze", dependencies=("a",)),
            Task("c", "Chart", dependencies=("a",)),
            Task("d", "Report", dependencies=("b", "c")),
        ],
        goal="g",
    )


class Recorder:
    """A controller that records what the buttons asked for."""

    def __init__(self):
        self.calls = []
        self.edits = []

    def start_run(self, *, refresh=False):
        self.calls.append(("run", refresh))

    def cancel_run(self, task_id=None):
        self.calls.append(("cancel", task_id))

    def retry_failed(self, task_ids=None):
        self.calls.append(("retry", task_ids))

    def graph_edited(self, change):
        self.edits.append(change)


def test_svg_and_tasks_are_synced():
    w = DagWidget(diamond(), title="demo")
    assert 'id="node-a"' in w.svg.replace("&#45;", "-")
    assert [t["id"] for t in w.tasks] == ["a", "b", "c", "d"]
    assert w.tasks[3]["dependencies"] == ["b", "c"]
    assert repr(w) == "DagWidget('demo', 4 tasks)"


def test_selecting_a_node_fills_the_inspector():
    w = DagWidget(diamond())
    w.selected = "b"
    assert w.inspector["id"] == "b"
    assert w.inspector["name"] == "Analyze"
    assert w.inspector["dependencies"] == [{"id": "a", "name": "Collect"}]
    assert w.inspector["dependents"] == [{"id": "d", "name": "Report"}]
    assert w.inspector["status"] == "pending"
    w.selected = ""
    assert w.inspector == {}
    w.selected = "a"
    assert "arguments" not in w.inspector  # only tasks that have arguments show them


def test_the_inspector_shows_a_tasks_arguments():
    graph = TaskGraph.from_plan(
        {
            "task_nodes": [
                {"task": "Image Captioning", "arguments": ["example.jpg"]},
                {"task": "Translation", "arguments": ["<node-0>", "<b>French</b>"]},
            ]
        }
    )
    w = DagWidget(graph)
    w.selected = "Translation"
    assert w.inspector["arguments"] == (
        '1. the result of "Image Captioning"\n2. <b>French</b>'  # shown as text, never as HTML
    )


def test_adding_an_edge_changes_the_graph_and_the_drawing():
    controller = Recorder()
    w = DagWidget(diamond(), controller=controller)
    before = w.svg
    w.edit = {"seq": 1, "op": "add_dependency", "task": "c", "dependency": "b"}
    assert w.graph.tasks["c"].dependencies == ("a", "b")
    assert w.svg != before
    assert "edge-b-c" in w.svg.replace("&#45;", "-")
    assert controller.edits == [{"op": "add_dependency", "id": "c", "dependency": "b"}]
    assert w.message["text"] == "'c' now depends on 'b'"


def test_an_edit_that_makes_a_cycle_is_refused_and_changes_nothing():
    controller = Recorder()
    w = DagWidget(diamond(), controller=controller)
    plan, svg = w.graph.to_plan(), w.svg
    w.edit = {"seq": 1, "op": "add_dependency", "task": "a", "dependency": "d"}
    assert w.message["level"] == "error"
    assert "would make a cycle" in w.message["text"]
    assert w.graph.to_plan() == plan
    assert w.svg == svg
    assert controller.edits == []


def test_add_update_and_remove_tasks():
    w = DagWidget(diamond(), controller=Recorder())
    w.edit = {
        "seq": 1,
        "op": "add_task",
        "name": "Summary",
        "description": "Sum up",
        "kind": "llm",
        "dependencies": ["d"],
    }
    new = w.selected
    assert w.graph.tasks[new].dependencies == ("d",)
    assert w.inspector["name"] == "Summary"
    w.edit = {"seq": 2, "op": "update_task", "task": new, "name": "Wrap-up", "kind": "report"}
    assert (w.graph.tasks[new].name, w.graph.tasks[new].kind) == ("Wrap-up", "report")
    w.edit = {"seq": 3, "op": "remove_dependency", "task": "d", "dependency": "c"}
    assert w.graph.tasks["d"].dependencies == ("b",)
    w.edit = {"seq": 4, "op": "remove_task", "task": "c"}
    assert "c" not in w.graph
    w.edit = {"seq": 5, "op": "update_task", "task": "a", "kind": "shell"}
    assert w.message["text"] == "unknown kind 'shell': use one of llm, python, report"


def test_buttons_call_the_controller():
    controller = Recorder()
    w = DagWidget(diamond(), controller=controller)
    w.edit = {"seq": 1, "op": "run"}
    w.edit = {"seq": 2, "op": "cancel"}
    w.edit = {"seq": 3, "op": "retry", "task": "b"}
    w.edit = {"seq": 4, "op": "retry"}
    assert controller.calls == [("run", False), ("cancel", None), ("retry", ["b"]), ("retry", None)]


async def test_status_recolouring_keeps_the_layout():
    w = DagWidget(diamond())
    svg = w.svg

    async def runner(task, inputs):
        if task.id == "c":
            raise ValueError("no chart")
        return f"**{task.name}** done"

    run = onb.start(w.graph, runner=runner, store="memory://")
    w.attach_run(run)
    await run
    await asyncio.sleep(0.15)
    assert w.statuses == {"a": "done", "b": "done", "c": "failed", "d": "skipped"}
    assert w.svg == svg  # recoloured by class in the browser, never re-laid out
    assert w.progress["failed"] == 1 and w.progress["state"] == "failed"
    assert {row["id"] for row in w.timeline} == {"a", "b", "c"}
    w.selected = "b"
    assert w.inspector["status"] == "done"
    assert w.inspector["result"] == {
        "type": "markdown",
        "html": "<p><strong>Analyze</strong> done</p>\n",
        "truncated": False,
    }
    w.selected = "c"
    assert w.inspector["error"] == "ValueError: no chart"
    assert w.inspector["attempts"] == 1


async def test_updates_are_coalesced_for_big_runs():
    g = TaskGraph([Task(f"t{i}") for i in range(2000)])
    w = DagWidget(g)
    changes = []
    w.observe(lambda change: changes.append(change), names="statuses")

    async def runner(task, inputs):
        await asyncio.sleep(0)
        return 1

    started = time.perf_counter()
    run = onb.start(g, runner=runner, store="memory://", max_workers=16)
    w.attach_run(run)
    await run
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.15)
    assert set(w.statuses.values()) == {"done"}
    assert len(changes) <= elapsed * 10 + 3
    assert w.sent_updates <= elapsed * 10 + 3
    assert len(run.events) > 6000  # many events, few front-end updates


def test_stale_marks_and_messages():
    w = DagWidget(diamond())
    w.set_stale(["d", "b"])
    assert w.stale == ["b", "d"]
    w.selected = "b"
    assert w.inspector["stale"] is True
    w.set_planning("planning…")
    assert w.busy == "planning"
    w.show_error("the model refused")
    assert (w.busy, w.message["level"], w.message["text"]) == ("", "error", "the model refused")


def test_edits_without_a_graph_are_refused():
    w = DagWidget()
    w.edit = {"seq": 1, "op": "add_task", "name": "x"}
    assert w.message["text"] == "there is no plan to edit yet"


@pytest.mark.parametrize("op", ["run", "cancel", "retry"])
def test_commands_without_a_controller_say_so(op):
    w = DagWidget(diamond())
    w.edit = {"seq": 1, "op": op}
    assert "not connected" in w.message["text"]
