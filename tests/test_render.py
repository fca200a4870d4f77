"""Drawing: colours by status, shapes by kind, escaping, a layout that status cannot move."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from orchestra_nb import ConfigError, Task, TaskGraph
from orchestra_nb._render import STATUS_STYLE, graph_mimebundle, graph_text, render_svg, to_graphviz

SVG = "{http://www.w3.org/2000/svg}"


def diamond() -> TaskGraph:
    return TaskGraph(
        [
            Task("a", "Collect data", "Gather figures", estimated_time=15),
            Task("b", "Analyze", dependencies=("a",), estimated_time=90, kind="python"),
            Task("c", "Chart", dependencies=("a",), estimated_time=5),
            Task("d", "Report", dependencies=("b", "c"), estimated_time=0.5, kind="report"),
        ],
        goal="Write a report",
    )


def nodes(svg: str) -> dict[str, ET.Element]:
    root = ET.fromstring(svg)
    return {
        g.get("id")[5:]: g for g in root.iter(f"{SVG}g") if (g.get("id") or "").startswith("node-")
    }


def test_ids_classes_and_colours_by_status():
    statuses = {"a": "done", "b": "failed", "c": "running"}
    svg = render_svg(diamond(), statuses)
    found = nodes(svg)
    assert set(found) == {"a", "b", "c", "d"}
    assert "status-done" in found["a"].get("class")
    assert "status-failed" in found["b"].get("class")
    assert "status-pending" in found["d"].get("class")
    fills = {
        tid: [el.get("fill") for el in g.iter() if el.tag in (f"{SVG}path", f"{SVG}polygon")]
        for tid, g in found.items()
    }
    assert "#dcfce7" in fills["a"]
    assert "#fee2e2" in fills["b"]
    root = ET.fromstring(svg)
    edge_ids = {g.get("id") for g in root.iter(f"{SVG}g") if "edge" in (g.get("class") or "")}
    assert edge_ids == {"edge-a-b", "edge-a-c", "edge-b-d", "edge-c-d"}


def test_shapes_by_kind_and_critical_path():
    dot = to_graphviz(diamond()).source
    assert re.search(r"\bb \[.*shape=component", dot)
    assert re.search(r"\bd \[.*shape=note", dot)
    assert re.search(r"\ba \[.*shape=box", dot)
    assert re.search(r'a -> b \[.*class="dep critical"', dot)
    assert re.search(r"a -> c \[.*class=dep\b", dot)
    assert "critical" not in to_graphviz(diamond(), highlight_critical_path=False).source


def test_stale_nodes_are_marked():
    svg = render_svg(diamond(), stale=["c"])
    assert "stale" in nodes(svg)["c"].get("class")
    assert "stale" not in nodes(svg)["a"].get("class")


HOSTILE = '<script>x("y")</script> \\n {a|b} & "q" ✓'


def test_hostile_text_renders_literally():
    g = TaskGraph([Task("x", HOSTILE, description=HOSTILE + "\nsecond line")])
    svg = render_svg(g)
    root = ET.fromstring(svg)  # well formed
    assert not [el for el in root.iter() if el.tag.endswith("script")]
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert HOSTILE in texts
    titles = [a.get("{http://www.w3.org/1999/xlink}title") for a in root.iter(f"{SVG}a")]
    assert titles == [HOSTILE + " second line"]


def test_status_changes_do_not_move_anything():
    tasks = []
    for i in range(25):
        deps = tuple(f"t{j}" for j in range(i) if (i + j) % 3 == 0)
        tasks.append(Task(f"t{i}", f"Task {i}", dependencies=deps))
    g = TaskGraph(tasks)
    before = render_svg(g)
    cycle = ["done", "failed", "running", "skipped", "cached"] * 5
    after = render_svg(g, {f"t{i}": status for i, status in enumerate(cycle)})

    def geometry(svg):
        out = {}
        for tid, node in nodes(svg).items():
            shapes = [
                el.get("points") or el.get("d")
                for el in node.iter()
                if el.tag in (f"{SVG}polygon", f"{SVG}path")
            ]
            words = [(t.get("x"), t.get("y"), t.text) for t in node.iter(f"{SVG}text")]
            out[tid] = (shapes, words)
        return out

    assert geometry(before) == geometry(after)
    assert before != after


def test_text_view_is_exact():
    text = graph_text(diamond(), {"a": "done"})
    assert text == (
        "TaskGraph: 4 tasks, 4 dependencies\n"
        "goal: Write a report\n"
        "  a  Collect data          15 min  [done]\n"
        "  b  Analyze       ← a     1.5 h\n"
        "  c  Chart         ← a     5 min\n"
        "  d  Report        ← b, c  30 s\n"
        "critical path: a → b → d (1.8 h)"
    )


def test_mimebundle_and_repr_hook():
    bundle = diamond()._repr_mimebundle_()
    assert bundle["text/plain"].startswith("TaskGraph: 4 tasks")
    assert bundle["image/svg+xml"].lstrip().startswith("<?xml")


def test_missing_dot(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"graphviz's `dot` program is not installed: apt-get"):
        render_svg(diamond())
    assert set(graph_mimebundle(diamond())) == {"text/plain"}


def test_control_characters_show_as_escapes():
    hostile = "a\x1b]0;TITLE\x07\x1b[2J\x9bb"
    svg = render_svg(TaskGraph([Task("x", hostile, description=hostile)]))
    root = ET.fromstring(svg)  # still well-formed XML: raw controls would not be
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert "a\\u001b]0;TITLE\\u0007\\u001b[2J\\u009bb" in texts
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", svg)


def test_legend_explains_colours_shapes_and_the_critical_path():
    plain = render_svg(diamond(), {"a": "done", "b": "cached"})
    svg = render_svg(diamond(), {"a": "done", "b": "cached"}, legend=True)
    root = ET.fromstring(svg)
    ids = {g.get("id") for g in root.iter(f"{SVG}g")}
    assert {
        "legend",
        "legend-status",
        "legend-kind-llm",
        "legend-kind-python",
        "legend-kind-report",
        "legend-critical",
    } <= ids
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("id") == "legend-status")
    words = [t.text for t in legend.iter(f"{SVG}text")]
    # the usual statuses always, and every status the plan shows
    assert words == ["pending", "running", "done", "cached", "failed"]
    fills = {el.get("fill") for el in legend.iter() if el.get("fill")}
    own = {STATUS_STYLE[s]["fillcolor"] for s in ("done", "cached", "failed")}
    assert own <= fills  # the nodes' own colours
    # the plan's tasks are the same nodes, and nothing in the legend is taken for a task
    assert set(nodes(svg)) == set(nodes(plain)) == {"a", "b", "c", "d"}
    tasks = [g for g in root.iter(f"{SVG}g") if "task" in (g.get("class") or "").split()]
    assert {g.get("id") for g in tasks} == {"node-a", "node-b", "node-c", "node-d"}
    assert "legend" not in to_graphviz(diamond()).source
