"""The widget from Python, setting synced traits exactly as the front end does."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph
from orchestra_nb.jupyter._widget import DagWidget, group_status
from orchestra_nb.store import MemoryStore
from tests.support import LoopTicks

MONTAGE = Path(__file__).parent / "data" / "montage-chameleon-2mass-05d-001.json"


def montage() -> TaskGraph:
    return TaskGraph.from_plan(json.loads(MONTAGE.read_text()))


def drawn(w: DagWidget) -> dict[str, list]:
    return {n[0]: n for n in w.layout["nodes"]}


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


def test_layout_and_tasks_are_synced():
    w = DagWidget(diamond(), title="demo")
    assert w.layout["state"] == "ready"  # no running loop: laid out at once
    assert set(drawn(w)) == {"a", "b", "c", "d"}
    assert {(e[0], e[1]) for e in w.layout["edges"]} == set(w.graph.edges)
    assert w.tasks == [
        {"id": "a", "name": "Collect"},
        {"id": "b", "name": "Analyze"},
        {"id": "c", "name": w.graph.tasks["c"].name},
        {"id": "d", "name": "Report"},
    ]
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
    w.edit = {"seq": 1, "op": "add_dependency", "task": "c", "dependency": "b"}
    assert w.graph.tasks["c"].dependencies == ("a", "b")
    assert ("b", "c") in {(e[0], e[1]) for e in w.layout["edges"]}
    assert controller.edits == [{"op": "add_dependency", "id": "c", "dependency": "b"}]
    assert w.message["text"] == "'c' now depends on 'b'"


def test_an_edit_that_makes_a_cycle_is_refused_and_changes_nothing():
    controller = Recorder()
    w = DagWidget(diamond(), controller=controller)
    plan, layout = w.graph.to_plan(), w.layout
    w.edit = {"seq": 1, "op": "add_dependency", "task": "a", "dependency": "d"}
    assert w.message["level"] == "error"
    assert "would make a cycle" in w.message["text"]
    assert w.graph.to_plan() == plan
    assert w.layout == layout
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
    layout = await w.laid_out()

    async def runner(task, inputs):
        if task.id == "c":
            raise ValueError("no chart")
        return f"**{task.name}** done"

    run = onb.start(w.graph, runner=runner, store="memory://")
    w.attach_run(run)
    await run
    await asyncio.sleep(0.15)
    assert w.statuses == {"a": "done", "b": "done", "c": "failed", "d": "skipped"}
    assert w.layout == layout  # recoloured by class in the browser, never re-laid out
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
    await w.laid_out()
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
    # one flush per 0.1 s at most, plus those that do not wait: attaching, the last timed
    # one, the run's end and the watcher's when the run returns
    assert len(changes) <= elapsed * 10 + 4
    assert w.sent_updates <= elapsed * 10 + 4
    assert len(run.events) > 6000  # many events, few front-end updates


def test_stale_marks_and_messages():
    w = DagWidget(diamond())
    w.selected = "b"
    assert w.inspector["stale"] is False
    w.set_stale(["d", "b"])
    assert w.stale == ["b", "d"]
    assert w.inspector["stale"] is True  # at once, not after selecting again
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


def test_retry_sends_the_task_ids():
    controller = Recorder()
    w = DagWidget(diamond(), controller=controller)
    w.edit = {"seq": 1, "op": "retry", "task": "c"}
    assert controller.calls == [("retry", ["c"])]


async def test_a_big_plan_is_laid_out_off_the_loop_and_collapsed():
    g = montage()
    async with LoopTicks() as ticks:
        started = time.perf_counter()
        w = DagWidget(g, title="montage")
        returned = time.perf_counter() - started
        assert w.layout["state"] == "pending"  # placeholder first
        assert w.layout["summary"] == "1,738 tasks, 4,698 dependencies"
        layout = await w.laid_out()
    assert layout["state"] == "ready"
    assert len(layout["nodes"]) == 8
    assert ticks.count >= 1 and returned < 5  # the loop turned while dot worked
    # each group has one status for its members; a task is found inside its group
    assert set(w.statuses) == set(w.groups)
    member = "mDiffFit_ID0000082"
    group = w.drawn_as(member)
    assert group in w.groups and member in w.groups[group]
    w.selected = member
    assert w.inspector["in_group"] == {"id": group, "count": 1242}
    w.selected = group
    assert w.inspector["count"] == 1242 and w.inspector["name"] == "mDiffFit ×1,242"
    assert len(w.inspector["members"]) == 200
    # what the notebook would save for it stays small
    state = w.get_state()
    assert len(json.dumps(state, default=str)) < 400_000


async def test_groups_expand_and_collapse():
    w = DagWidget(montage())
    await w.laid_out()
    project = next(gid for gid, members in w.groups.items() if len(members) == 240
                   if members[0].startswith("mProject"))  # fmt: skip
    w.edit = {"seq": 1, "op": "expand", "group": project}
    assert w.message["text"] == "expanding 240 tasks…"
    layout = await w.laid_out()
    ids = {n[0] for n in layout["nodes"]}
    assert "mProject_ID0000001" in ids and project not in ids
    assert layout["expanded"] == [project]
    assert w.message["text"] == ""
    w.edit = {"seq": 2, "op": "collapse"}
    layout = await w.laid_out()
    assert project in {n[0] for n in layout["nodes"]} and layout["expanded"] == []
    w.edit = {"seq": 3, "op": "expand", "group": "group-nope"}
    assert w.message == {"level": "error", "text": "no group 'group-nope' in the drawing",
                         "seq": w.message["seq"]}  # fmt: skip


def test_group_status():
    assert group_status(["done", "done"]) == "done"
    assert group_status(["done", "cached"]) == "done"
    assert group_status(["cached", "cached"]) == "cached"
    assert group_status(["done", "running", "failed"]) == "failed"
    assert group_status(["done", "pending"]) == "pending"
    assert group_status(["skipped", "pending"]) == "skipped"


async def test_the_message_bar_says_how_each_run_ended():
    w = DagWidget(diamond(), controller=Recorder())
    w.edit = {"seq": 1, "op": "update_task", "task": "a", "name": "Gather"}
    assert w.message["text"] == "updated name of 'a'"

    async def runner(task, inputs):
        if task.id == "c":
            raise ValueError("no chart")
        return task.name

    run = onb.start(w.graph, runner=runner, store="memory://")
    w.attach_run(run)
    assert w.message["text"] == f"run {run.id} started"  # the old edit note is gone
    await run
    await asyncio.sleep(0.01)
    assert w.message["level"] == "error"
    assert w.message["text"].startswith(f"run {run.id} failed: 2/4 done, 1 failed, 1 skipped")
    assert "c: ValueError: no chart" in w.message["text"]

    async def ok(task, inputs):
        return 1

    run = onb.start(w.graph, runner=ok, store="memory://")
    w.attach_run(run)
    await run
    await asyncio.sleep(0.01)
    assert (w.message["level"], w.message["text"][:30]) == ("info", f"run {run.id} finished"[:30])


async def test_retry_is_possible_after_a_cancel():
    w = DagWidget(diamond(), controller=Recorder())
    started = asyncio.Event()

    async def slow(task, inputs):
        started.set()
        await asyncio.sleep(30)

    run = onb.start(w.graph, runner=slow, store="memory://")
    w.attach_run(run)
    assert w.can == {"run": False, "cancel": True, "retry": False, "edit": True}
    await started.wait()
    run.cancel()
    await run
    await asyncio.sleep(0.01)
    assert w.progress["cancelled"] >= 1
    assert w.can["retry"] is True and w.can["run"] is True and w.can["cancel"] is False
    assert w.message["level"] == "warning" and "was cancelled" in w.message["text"]


class BrokenController(Recorder):
    def start_run(self, *, refresh=False):
        raise RuntimeError("the controller broke")


def test_an_exception_in_a_widget_action_is_shown_and_logged(caplog):
    w = DagWidget(diamond(), controller=BrokenController())
    with caplog.at_level(logging.ERROR, logger="orchestra_nb"):
        w.edit = {"seq": 1, "op": "run"}
    assert w.message["level"] == "error"
    assert w.message["text"] == "cannot run: RuntimeError: the controller broke"
    assert "the controller broke" in caplog.text


class FailingStore(MemoryStore):
    async def get_many(self, keys):
        raise RuntimeError("disk on fire")


async def test_an_exception_that_stops_a_run_is_shown_and_logged(caplog):
    w = DagWidget(diamond(), controller=Recorder())

    async def ok(task, inputs):
        return 1

    run = onb.start(w.graph, runner=ok, store=FailingStore())
    with caplog.at_level(logging.ERROR, logger="orchestra_nb"):
        w.attach_run(run)
        with pytest.raises(RuntimeError):
            await run
        await asyncio.sleep(0.01)
    assert w.message["level"] == "error"
    assert w.message["text"] == f"run {run.id} stopped: RuntimeError: disk on fire"
    assert "disk on fire" in caplog.text
    assert w.busy == "" and w.can["run"] is True


def test_tool_arguments_show_in_the_inspector_when_a_plan_has_them():
    w = DagWidget(diamond())
    w.selected = "a"
    assert "arguments" not in w.inspector  # a Task without the field (or empty)
