"""Drawing plans: a pure graphviz builder, SVG through ``dot``, and plain text.

``to_graphviz`` only *builds* a ``graphviz.Digraph`` (no files, no processes).
Status changes colour; they never change a node's shape, label or size, so the
layout ``dot`` computes is the same for every status map — the widget lays a
graph out once and recolours it by CSS class, using the ``node-<id>`` and
``edge-<dep>-<id>`` element ids written into the SVG. Everything user-written
is escaped: names, descriptions and ids render literally and cannot inject DOT
or markup, and control characters show as ``\u001b``-style escapes.

``legend=True`` adds a key beside the plan — status colours, kind shapes, the
critical path — for files read without the widget (``plan.svg`` of a report).
Its elements carry ``legend-*`` ids and no ``task`` class, so nothing that
looks for tasks in the SVG finds them.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError
from ._text import shorten

if TYPE_CHECKING:
    import graphviz

    from ._plan import TaskGraph

STATUS_STYLE: Mapping[str, Mapping[str, str]] = {
    "pending": {"fillcolor": "#f4f4f5", "color": "#a1a1aa", "fontcolor": "#3f3f46"},
    "awaiting_approval": {"fillcolor": "#ede9fe", "color": "#7c3aed", "fontcolor": "#4c1d95"},
    "ready": {"fillcolor": "#e0f2fe", "color": "#0ea5e9", "fontcolor": "#0c4a6e"},
    "running": {"fillcolor": "#fef3c7", "color": "#d97706", "fontcolor": "#78350f"},
    "batched": {"fillcolor": "#e0e7ff", "color": "#4f46e5", "fontcolor": "#312e81"},
    "waiting": {"fillcolor": "#ffedd5", "color": "#ea580c", "fontcolor": "#7c2d12"},
    "done": {"fillcolor": "#dcfce7", "color": "#16a34a", "fontcolor": "#14532d"},
    "cached": {"fillcolor": "#dbeafe", "color": "#2563eb", "fontcolor": "#1e3a8a"},
    "failed": {"fillcolor": "#fee2e2", "color": "#dc2626", "fontcolor": "#7f1d1d"},
    "skipped": {"fillcolor": "#fafafa", "color": "#d4d4d8", "fontcolor": "#a1a1aa"},
    "cancelled": {"fillcolor": "#e4e4e7", "color": "#52525b", "fontcolor": "#3f3f46"},
    "unsaved": {"fillcolor": "#fef9c3", "color": "#ca8a04", "fontcolor": "#713f12"},
}
STALE_COLOR = "#9333ea"
KIND_SHAPE: Mapping[str, str] = {"llm": "box", "python": "component", "report": "note"}
#: How the widget tells statuses apart without colour: a mark before the name and the
#: outline's line (cached is not done, skipped is not pending, even in grey scale). Marks
#: are characters every common UI font has (DejaVu Sans, Segoe UI, Helvetica), no emoji.
STATUS_MARK: Mapping[str, Mapping[str, str]] = {
    "pending": {"mark": "", "line": "solid"},
    "awaiting_approval": {"mark": "‖", "line": "dotted"},
    "ready": {"mark": "•", "line": "solid"},
    "running": {"mark": "▶", "line": "solid"},
    "batched": {"mark": "≡", "line": "dotted"},
    "waiting": {"mark": "…", "line": "dotted"},
    "done": {"mark": "✓", "line": "solid"},
    "cached": {"mark": "↺", "line": "double"},
    "failed": {"mark": "✗", "line": "solid"},
    "skipped": {"mark": "⊘", "line": "dashed"},
    "cancelled": {"mark": "■", "line": "dashed"},
    "unsaved": {"mark": "!", "line": "dotted"},
}
_DEFAULT_SHAPE = "box"
_CRITICAL = {"color": "#1e3a8a", "penwidth": "2.2"}
TEXT_ROWS = 60  # tasks listed one per line in the text view; bigger plans are summarised
SVG_TASKS = 120  # biggest plan drawn as a static SVG beside the widget
_INSTALL_DOT = (
    "graphviz's `dot` program is not installed: apt-get install graphviz, "
    "conda install -c conda-forge graphviz, or brew install graphviz"
)


def widget_look() -> dict[str, object]:
    """How the widget draws statuses, kinds and the critical path, as data for its JavaScript.

    Each status has one hue (the outline; the fill is that hue mixed into the theme's
    background, so it reads on light and dark themes), a mark and a line style.
    """
    return {
        "statuses": {
            name: {"color": STATUS_STYLE[name]["color"], **STATUS_MARK[name]}
            for name in STATUS_STYLE
        },
        "kinds": dict(KIND_SHAPE),
        "default_shape": _DEFAULT_SHAPE,
        "stale": STALE_COLOR,
        "critical": _CRITICAL["color"],
    }


def format_minutes(minutes: float | None) -> str:
    if minutes is None:
        return ""
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 60:
        return f"{minutes:g} min" if minutes == int(minutes) else f"{minutes:.1f} min"
    hours = minutes / 60
    return f"{hours:g} h" if hours == int(hours) else f"{hours:.1f} h"


def to_graphviz(
    graph: TaskGraph,
    statuses: Mapping[str, str] | None = None,
    *,
    stale: Iterable[str] = (),
    highlight_critical_path: bool = True,
    rankdir: str = "LR",
    max_label: int = 40,
    legend: bool = False,
) -> graphviz.Digraph:
    """The plan as a ``graphviz.Digraph``: colour by status, shape by kind, critical path bold.

    ``legend=True`` adds the key to those colours and shapes (see the module docstring).
    """
    import graphviz

    statuses = statuses or {}
    stale_ids = set(stale)
    critical: set[str] = set()
    critical_edges: set[tuple[str, str]] = set()
    if highlight_critical_path and len(graph) > 1:
        ids = graph.critical_path().ids
        critical = set(ids)
        critical_edges = set(itertools.pairwise(ids))

    dot = graphviz.Digraph(name="plan")
    dot.attr(rankdir=rankdir, bgcolor="transparent", nodesep="0.25", ranksep="0.45")
    if len(graph) > 300:  # keep dot's crossing minimization affordable on big plans
        dot.attr(nslimit="2", mclimit="0.5", searchsize="20")
    dot.attr("node", fontname="Helvetica", fontsize="11", margin="0.12,0.06", height="0.4")
    dot.attr("edge", color="#94a3b8", arrowsize="0.6")
    for tid, task in graph.tasks.items():
        status = statuses.get(tid, "pending")
        style = dict(STATUS_STYLE.get(status, STATUS_STYLE["pending"]))
        shape = KIND_SHAPE.get(task.kind, _DEFAULT_SHAPE)
        looks = ["filled"]
        if shape == "box":
            looks.append("rounded")
        if status == "skipped":
            looks.append("dashed")
        if tid in stale_ids:
            style["color"] = STALE_COLOR
            looks.append("dashed")
        label = graphviz.escape(shorten(task.name, max_label))
        minutes = format_minutes(task.estimated_time)
        if minutes:
            label += "\\n" + minutes
        classes = f"task status-{status} kind-{_css(task.kind)}"
        if tid in stale_ids:
            classes += " stale"
        if tid in critical:
            classes += " critical"
        dot.node(
            tid,
            label=graphviz.nohtml(label),
            shape=shape,
            style=",".join(looks),
            tooltip=graphviz.escape(shorten(task.description or task.name, 300)),
            id=f"node-{tid}",
            penwidth="2" if tid in critical else "1",
            **{"class": classes},
            **style,
        )
    for dep, tid in graph.edges:
        attrs = {"id": f"edge-{dep}-{tid}", "class": "dep"}
        if (dep, tid) in critical_edges:
            attrs.update(_CRITICAL)
            attrs["class"] = "dep critical"
        dot.edge(dep, tid, **attrs)
    if legend:
        _add_legend(dot, graph, statuses, highlight_critical_path and len(graph) > 1)
    return dot


#: The statuses the legend explains, in the order a run goes through them.
LEGEND_STATUSES = (
    "pending",
    "running",
    "batched",
    "done",
    "cached",
    "failed",
    "skipped",
    "cancelled",
)
_KIND_WORDS = {"llm": "LLM step", "python": "Python function", "report": "report"}


def _add_legend(
    dot: graphviz.Digraph, graph: TaskGraph, statuses: Mapping[str, str], critical: bool
) -> None:
    """A boxed key to the right of the plan: status colours, kind shapes, the critical path.

    The usual statuses are always listed, so a plan that has not run yet still
    says what the colours will mean; the kinds are those the plan uses.
    """
    import graphviz

    used = set(statuses.values())
    shown = [s for s in LEGEND_STATUSES if s in used or s in ("pending", "running", "done",
                                                               "failed")]  # fmt: skip
    cells = "".join(
        f'<TR><TD BGCOLOR="{STATUS_STYLE[s]["fillcolor"]}" COLOR="{STATUS_STYLE[s]["color"]}" '
        f'BORDER="1" STYLE="rounded"><FONT COLOR="{STATUS_STYLE[s]["fontcolor"]}">{s}</FONT>'
        "</TD></TR>"
        for s in shown
    )
    kinds = [k for k in KIND_SHAPE if k in {t.kind for t in graph.tasks.values()}] or ["llm"]

    box = graphviz.Digraph(name="cluster_legend")
    box.attr(label="Legend", fontname="Helvetica", fontsize="10", color="#d4d4d8",
             style="rounded", margin="8", id="legend")  # fmt: skip
    box.attr("node", fontname="Helvetica", fontsize="9", height="0.25", margin="0.06,0.03",
             **{"class": "legend"})  # fmt: skip
    column = ["legend-status"]
    box.node(
        "legend-status",
        id="legend-status",
        shape="plaintext",
        label=f'<<TABLE BORDER="0" CELLSPACING="3" CELLPADDING="2">{cells}</TABLE>>',
    )
    for kind in kinds:
        name = f"legend-kind-{kind}"
        box.node(name, label=_KIND_WORDS.get(kind, kind), shape=KIND_SHAPE[kind], id=name,
                 style="filled" + (",rounded" if KIND_SHAPE[kind] == "box" else ""),
                 fillcolor="#ffffff", color="#71717a")  # fmt: skip
        column.append(name)
    if critical:  # a bold edge from the label to a dot in the next rank
        box.node("legend-critical", label="critical path", id="legend-critical", shape="plaintext")
        box.node("legend-critical-end", label="", id="legend-critical-end", shape="point",
                 width="0.06", color=_CRITICAL["color"])  # fmt: skip
        box.edge("legend-critical", "legend-critical-end", **{"class": "legend"}, **_CRITICAL)
        column.append("legend-critical")
    with box.subgraph() as same:  # one column...
        same.attr(rank="same")
        for name in column:
            same.node(name)
    for upper, lower in itertools.pairwise(reversed(column)):  # ...in this order, top down
        box.edge(upper, lower, style="invis")
    dot.subgraph(box)
    for sink in graph.sinks():  # ...one rank to the right of the plan
        dot.edge(sink, column[0], style="invis")


def _css(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def dot_available() -> bool:
    import shutil

    return shutil.which("dot") is not None


def render_svg(graph: TaskGraph, statuses: Mapping[str, str] | None = None, **kwargs: Any) -> str:
    """The plan as SVG laid out by ``dot`` (ConfigError saying how to install it if missing)."""
    import graphviz

    try:
        return to_graphviz(graph, statuses, **kwargs).pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound:
        raise ConfigError(_INSTALL_DOT) from None


def graph_text(graph: TaskGraph, statuses: Mapping[str, str] | None = None) -> str:
    """A deterministic plain-text view: one line per task, then the critical path."""
    edges = sum(len(t.dependencies) for t in graph.tasks.values())  # no list of pairs
    lines = [f"TaskGraph: {len(graph)} task{'s' * (len(graph) != 1)}, "
             f"{edges} dependenc{'ies' if edges != 1 else 'y'}"]  # fmt: skip
    if graph.goal:
        lines.append(f"goal: {shorten(graph.goal, 100)}")
    rows = []
    for tid, task in itertools.islice(graph.tasks.items(), TEXT_ROWS):
        deps = shorten(f"← {', '.join(task.dependencies)}", 60) if task.dependencies else ""
        status = f"[{statuses[tid]}]" if statuses and tid in statuses else ""
        minutes = format_minutes(task.estimated_time)
        rows.append((tid, shorten(task.name, 40), deps, minutes, status))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=True)]
        lines.append(("  " + "  ".join(cells)).rstrip())
    if len(graph) > TEXT_ROWS:
        lines.append(f"  … and {len(graph) - TEXT_ROWS:,} more tasks")
    if len(graph) > 1:
        path = graph.critical_path()
        timed = any(t.estimated_time is not None for t in graph.tasks.values())
        length = f" ({format_minutes(path.length) or '0 min'})" if timed else ""
        ids = path.ids if len(path.ids) <= 12 else (*path.ids[:5], "…", *path.ids[-5:])
        lines.append(f"critical path: {' → '.join(ids)}{length}")
    return "\n".join(lines)


def graph_mimebundle(
    graph: TaskGraph,
    statuses: Mapping[str, str] | None = None,
    *,
    text: str | None = None,
    **kwargs: Any,
) -> dict[str, str]:
    """SVG and text for Jupyter; text only when ``dot`` is missing (never an error) and for
    plans over ``SVG_TASKS`` tasks (laying those out takes seconds and their SVG megabytes).
    ``text``: the text/plain to use instead of ``graph_text`` (a caller that has its own)."""
    bundle = {"text/plain": graph_text(graph, statuses) if text is None else text}
    if len(graph) <= SVG_TASKS and dot_available():
        with contextlib.suppress(ConfigError):
            bundle["image/svg+xml"] = render_svg(graph, statuses, **kwargs)
    return bundle
