"""TaskGraph: reading, editing, ordering, critical path, save/load and properties."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestra_nb import PlanError, Task, TaskGraph


def diamond() -> TaskGraph:
    return TaskGraph(
        [
            Task("a", "A", estimated_time=1),
            Task("b", "B", dependencies=("a",), estimated_time=5),
            Task("c", "C", dependencies=("a",), estimated_time=2),
            Task("d", "D", dependencies=("b", "c"), estimated_time=1),
        ],
        goal="diamond",
    )


def snapshot(g: TaskGraph) -> tuple:
    return (g.to_plan(), sorted(g.edges), g.version)


def test_tasks_is_a_read_only_mapping_in_plan_order():
    g = diamond()
    assert list(g.tasks) == ["a", "b", "c", "d"]
    assert g.tasks["b"].dependencies == ("a",)
    with pytest.raises(TypeError):
        g.tasks["x"] = Task("x")  # type: ignore[index]
    assert "a" in g and "z" not in g and len(g) == 4


def test_task_fields_and_defaults():
    t = Task("t1")
    assert (t.name, t.description, t.dependencies, t.estimated_time, t.kind) == (
        "t1",
        "",
        (),
        None,
        "llm",
    )
    assert Task("t", estimated_time="1h").estimated_time == 60.0
    assert Task("t", dependencies=("a", "a", "b")).dependencies == ("a", "b")


@pytest.mark.parametrize("bad", ["", "a b", "../x", "-x", ".x", "x" * 65, "é"])
def test_unsafe_task_ids_are_refused(bad):
    with pytest.raises(PlanError, match="not safe"):
        Task(bad)


def test_to_plan_is_the_seed_format():
    plan = diamond().to_plan()
    assert plan["goal"] == "diamond"
    assert plan["subtasks"][1] == {
        "id": "b",
        "name": "B",
        "description": "",
        "dependencies": ["a"],
        "estimated_time": 5.0,
    }


def test_save_and_load(tmp_path):
    g = diamond()
    path = tmp_path / "plan.json"
    g.save(path)
    assert TaskGraph.load(path) == g
    assert not list(tmp_path.glob("*.tmp*"))


def test_topological_order_and_generations():
    g = diamond()
    assert g.topological_order() == ["a", "b", "c", "d"]
    assert g.topological_generations() == [["a"], ["b", "c"], ["d"]]
    assert g.roots() == ["a"] and g.sinks() == ["d"]
    assert g.dependents("a") == ("b", "c")
    assert g.descendants("a") == {"b", "c", "d"}
    assert g.ancestors("d") == {"a", "b", "c"}


def test_critical_path_by_estimated_time():
    path = diamond().critical_path()
    assert path.ids == ("a", "b", "d")
    assert path.length == 7.0


def test_critical_path_with_unknown_times_uses_the_median():
    g = TaskGraph(
        [
            Task("a", estimated_time=10),
            Task("b", dependencies=("a",)),
            Task("c", estimated_time=2),
            Task("d", dependencies=("c",), estimated_time=30),
        ]
    )
    assert g.durations()["b"] == 10.0  # median of 10, 2, 30
    assert g.critical_path().ids == ("c", "d")


def test_add_and_remove_task():
    g = diamond()
    t = g.add_task(name="E", dependencies=("d",))
    assert t.id == "task_5" and g.tasks["task_5"].dependencies == ("d",)
    g.add_task(Task("f", dependencies=("a",)))
    removed = g.remove_task("a")
    assert removed.id == "a"
    assert g.tasks["b"].dependencies == () and g.tasks["f"].dependencies == ()
    assert ("a", "b") not in g.edges


def test_add_task_refusals_leave_graph_unchanged():
    g = diamond()
    before = snapshot(g)
    with pytest.raises(PlanError, match="already exists"):
        g.add_task(Task("a"))
    with pytest.raises(PlanError, match="unknown task 'zz'"):
        g.add_task(Task("e", dependencies=("zz",)))
    with pytest.raises(PlanError, match="cannot depend on itself"):
        g.add_task(Task("e", dependencies=("e",)))
    assert snapshot(g) == before


def test_add_dependency_and_cycle_refusal():
    g = diamond()
    g.add_dependency("c", "b")
    assert g.tasks["c"].dependencies == ("a", "b")
    before = snapshot(g)
    with pytest.raises(PlanError) as info:
        g.add_dependency("a", "d")
    assert str(info.value) == "adding 'd' -> 'a' would make a cycle: a -> b -> d -> a"
    assert set(info.value.ids) == {"a", "b", "d"}
    with pytest.raises(PlanError, match="itself"):
        g.add_dependency("a", "a")
    with pytest.raises(PlanError, match="no task with id 'q'"):
        g.add_dependency("a", "q")
    assert snapshot(g) == before
    g.add_dependency("c", "b")  # already there: no change, no version bump
    assert snapshot(g) == before


def test_remove_dependency():
    g = diamond()
    g.remove_dependency("d", "b")
    assert g.tasks["d"].dependencies == ("c",)
    with pytest.raises(PlanError, match="does not depend on 'b'"):
        g.remove_dependency("d", "b")


def test_update_task_fields_and_refusals():
    g = diamond()
    g.update_task("b", name="Bee", description="new", kind="python", estimated_time="2h")
    b = g.tasks["b"]
    assert (b.name, b.description, b.kind, b.estimated_time) == ("Bee", "new", "python", 120.0)
    before = snapshot(g)
    with pytest.raises(PlanError, match="cycle"):
        g.update_task("a", dependencies=("d",))
    with pytest.raises(PlanError, match="cannot update 'id'"):
        g.update_task("a", id="z")
    with pytest.raises(PlanError, match="unknown task"):
        g.update_task("a", dependencies=("nope",))
    assert snapshot(g) == before
    g.update_task("d", dependencies=("c",))
    assert ("b", "d") not in g.edges


def test_observers_see_each_edit():
    g = diamond()
    seen = []
    g.observe(seen.append)
    g.add_dependency("c", "b")
    with pytest.raises(PlanError):
        g.add_dependency("a", "d")
    g.update_task("a", name="Alpha")
    g.unobserve(seen.append)
    g.remove_task("d")
    assert [c["op"] for c in seen] == ["add_dependency", "update_task"]
    assert g.version == 3


def test_copy_is_independent():
    g = diamond()
    h = g.copy()
    h.add_task(Task("z"))
    assert "z" not in g and h != g


def test_compact_json_follows_edits_on_either_side_of_a_copy():
    def fresh(graph):
        return json.dumps(graph.to_plan(), ensure_ascii=False)

    g = diamond()
    h = g.copy()
    assert g.to_json(indent=None) == fresh(g) == h.to_json(indent=None)
    h.update_task("b", description="changed in the copy")
    g.add_task(Task("z"))
    g.goal = "another goal"
    for graph in (g, h):
        assert graph.to_json(indent=None) == fresh(graph)
    assert "changed in the copy" not in g.to_json(indent=None)
    assert '"z"' not in h.to_json(indent=None)


def test_repr_is_short_and_deterministic():
    assert repr(diamond()) == "TaskGraph(4 tasks, 4 dependencies, goal='diamond')"


def test_from_plan_accepts_a_graph_and_copies_it():
    g = diamond()
    h = TaskGraph.from_plan(g)
    assert h == g and h is not g


# --- properties over random DAGs ----------------------------------------------------------

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@st.composite
def dags(draw, max_tasks: int = 12) -> TaskGraph:
    n = draw(st.integers(1, max_tasks))
    ids = [f"t{i}" for i in range(n)]
    tasks = []
    for i, tid in enumerate(ids):
        parents = draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else []
        tasks.append(
            Task(
                tid,
                name=draw(texts),
                description=draw(texts),
                dependencies=tuple(parents),
                estimated_time=draw(st.none() | st.floats(0, 1000, allow_nan=False)),
                kind=draw(st.sampled_from(["llm", "python", "report"])),
            )
        )
    order = draw(st.permutations(tasks))
    return TaskGraph(order, goal=draw(st.none() | st.text(min_size=1, max_size=10)))


@settings(max_examples=150, deadline=None)
@given(dags())
def test_round_trip_through_plan_and_json(g):
    assert TaskGraph.from_plan(g.to_plan()) == g
    assert TaskGraph.from_plan(g.to_json()) == g


@settings(max_examples=150, deadline=None)
@given(dags())
def test_critical_path_is_at_least_every_path(g):
    weight = g.durations()
    path = g.critical_path()
    assert path.length == pytest.approx(sum(weight[t] for t in path.ids))
    for a, b in zip(path.ids, path.ids[1:], strict=False):
        assert a in g.tasks[b].dependencies

    # enumerate every root-to-sink path (graphs are small)
    def paths(tid):
        children = g.dependents(tid)
        if not children:
            yield [tid]
        for child in children:
            for rest in paths(child):
                yield [tid, *rest]

    for root in g.roots():
        for p in itertools.islice(paths(root), 2000):
            assert sum(weight[t] for t in p) <= path.length + 1e-9


@settings(max_examples=150, deadline=None)
@given(dags())
def test_topological_order_is_networkx_lexicographical_one_in_plan_order(g):
    import networkx as nx

    place = {tid: i for i, tid in enumerate(g.tasks)}
    expected = list(nx.lexicographical_topological_sort(g.nx_graph, key=place.__getitem__))
    assert g.topological_order() == expected


def test_derived_orders_and_critical_path_follow_edits():
    g = TaskGraph.from_plan(
        [{"id": "a", "estimated_time": 5}, {"id": "b", "dependencies": ["a"], "estimated_time": 1},
         {"id": "c", "dependencies": ["a"], "estimated_time": 2}]
    )  # fmt: skip
    assert g.critical_path().ids == ("a", "c")
    assert g.topological_order() == ["a", "b", "c"]
    copy = g.copy()  # shares what is derived until one side edits
    g.update_task("b", estimated_time=10)
    g.add_dependency("b", "c")
    assert g.critical_path().ids == ("a", "c", "b")
    assert g.topological_order() == ["a", "c", "b"]
    assert copy.critical_path().ids == ("a", "c")
    assert copy.topological_order() == ["a", "b", "c"]


@settings(max_examples=150, deadline=None)
@given(dags(), st.data())
def test_an_edit_that_would_make_a_cycle_changes_nothing(g, data):
    order = g.topological_order()
    if len(order) < 2:
        return
    i = data.draw(st.integers(0, len(order) - 2))
    j = data.draw(st.integers(i + 1, len(order) - 1))
    upstream, downstream = order[i], order[j]
    before = snapshot(g)
    if upstream in g.ancestors(downstream):
        with pytest.raises(PlanError, match="cycle"):
            g.add_dependency(upstream, downstream)
        with pytest.raises(PlanError, match="cycle"):
            g.update_task(upstream, dependencies=(*g.tasks[upstream].dependencies, downstream))
        assert snapshot(g) == before
    else:
        g.add_dependency(upstream, downstream)
        assert downstream in g.tasks[upstream].dependencies
        assert g.topological_order().index(downstream) < g.topological_order().index(upstream)


@settings(max_examples=100, deadline=None)
@given(dags())
def test_generations_respect_dependencies(g):
    level = {tid: n for n, layer in enumerate(g.topological_generations()) for tid in layer}
    assert set(level) == set(g.tasks)
    for tid, task in g.tasks.items():
        for dep in task.dependencies:
            assert level[dep] < level[tid]
