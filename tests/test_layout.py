"""Groups of related tasks and positions from dot: collapsed big plans, stable edits."""

from __future__ import annotations

import json
from pathlib import Path

from orchestra_nb import Task, TaskGraph
from orchestra_nb._layout import compute_layout, group_tasks, name_stem, snapshot

MONTAGE = Path(__file__).parent / "data" / "montage-chameleon-2mass-05d-001.json"


def montage() -> TaskGraph:
    return TaskGraph.from_plan(json.loads(MONTAGE.read_text()))


def test_name_stems():
    assert name_stem("mDiffFit_ID0000007") == "mDiffFit"
    assert name_stem("Task 12") == "Task"
    assert name_stem("Chart-3") == "Chart"
    assert name_stem("Market sizing") == "Market sizing"
    assert name_stem("42") == "42"


def test_montage_collapses_into_its_workflow_groups():
    g = montage()
    groups = group_tasks(snapshot(g))
    sizes = sorted((grp.stem, len(grp.members)) for grp in groups.values())
    assert sizes == [
        ("mAdd", 3), ("mBackground", 240), ("mBgModel", 3), ("mConcatFit", 3),
        ("mDiffFit", 1242), ("mImgtbl", 3), ("mProject", 240), ("mViewer", 4),
    ]  # fmt: skip
    assert sum(len(grp.members) for grp in groups.values()) == len(g)
    for grp in groups.values():  # a group never holds a dependency of its own member
        members = set(grp.members)
        assert all(not members & set(g.tasks[m].dependencies) for m in grp.members)


def test_irregular_big_plans_group_by_depth():
    # every task wired differently: grouping by shape would leave ~1,500 nodes
    import random

    rng = random.Random(1)
    tasks = []
    for i in range(5000):
        parents = rng.sample(range(max(0, i - 30), i), k=min(i, rng.randint(0, 2)))
        tasks.append(Task(f"t{i}", f"Task {i}", dependencies=tuple(f"t{p}" for p in parents)))
    g = TaskGraph(tasks)
    rows = snapshot(g)
    groups = group_tasks(rows, above=300)
    grouped = {m for grp in groups.values() for m in grp.members}
    assert len(groups) + len(g) - len(grouped) <= 300  # nodes drawn
    depth = {}
    for tid in g.topological_order():
        depth[tid] = 1 + max((depth[d] for d in g.tasks[tid].dependencies), default=-1)
    for grp in groups.values():
        assert {depth[m] for m in grp.members} == {depth[grp.members[0]]}
        members = set(grp.members)
        assert all(not members & set(g.tasks[m].dependencies) for m in grp.members)
    layout = compute_layout(rows, groups=groups)
    assert sum(e[3] for e in layout["edges"]) == len(g.edges)


def test_small_plans_and_expanded_groups_are_drawn_task_by_task():
    g = montage()
    assert group_tasks(snapshot(g), above=len(g)) == {}
    groups = group_tasks(snapshot(g))
    project = next(gid for gid, grp in groups.items() if grp.stem == "mProject")
    again = group_tasks(snapshot(g), expanded=[project])
    assert project not in again and set(again) == set(groups) - {project}


def test_collapsed_layout_of_a_big_plan():
    g = montage()
    rows = snapshot(g)
    layout = compute_layout(rows, groups=group_tasks(rows), critical=g.critical_path().ids)
    assert len(layout["nodes"]) == 8
    labels = {n[5] for n in layout["nodes"]}
    assert "mDiffFit ×1,242" in labels
    counts = {(e[0], e[1]): e[3] for e in layout["edges"]}
    assert sum(counts.values()) == len(g.edges)
    assert any(n[8] for n in layout["nodes"])  # the critical path runs through groups
    assert len(json.dumps(layout)) < 60_000  # mostly the member ids of each group


def diamond() -> TaskGraph:
    return TaskGraph(
        [
            Task("a", "Collect"),
            Task("b", "Analyze", dependencies=("a",)),
            Task("c", "Chart", dependencies=("a",)),
            Task("e", "Extra", dependencies=("a",)),
            Task("d", "Report", dependencies=("b", "c", "e")),
        ]
    )


def columns(layout) -> dict[float, list[str]]:
    cols: dict[float, list[tuple[float, str]]] = {}
    for n in layout["nodes"]:
        cols.setdefault(n[1], []).append((n[2], n[0]))
    return {x: [tid for _, tid in sorted(col)] for x, col in cols.items()}


def test_positions_edges_and_reading_order():
    g = diamond()
    layout = compute_layout(snapshot(g), critical=g.critical_path().ids)
    assert layout["nodes"][0][0] == "a"
    assert layout["order"][-1] == "d"
    xs = {n[0]: n[1] for n in layout["nodes"]}
    assert xs["a"] < xs["b"] == xs["c"] == xs["e"] < xs["d"]  # left to right by rank
    assert {(e[0], e[1]) for e in layout["edges"]} == set(g.edges)
    assert all(e[2].startswith("M") for e in layout["edges"])


def test_an_edit_keeps_the_order_of_the_other_nodes():
    import sys

    sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))
    from demo_answers import MARKET_PLAN

    g = TaskGraph.from_plan(MARKET_PLAN)
    before = compute_layout(snapshot(g), critical=g.critical_path().ids)
    g.add_dependency("task_3", "task_2")
    fresh = compute_layout(snapshot(g), critical=g.critical_path().ids)
    kept = compute_layout(
        snapshot(g), critical=g.critical_path().ids, previous_order=before["order"]
    )
    old = {tid: i for i, tid in enumerate(before["order"])}
    for col in columns(kept).values():
        survivors = [t for t in col if t in old]
        assert survivors == sorted(survivors, key=old.__getitem__)
    # dot alone reorders this column (which is why the old order is fed back)
    assert any(
        [t for t in col if t in old] != sorted((t for t in col if t in old), key=old.__getitem__)
        for col in columns(fresh).values()
    )
