"""Where the widget draws each task: groups of related tasks, and positions from ``dot``.

A big plan (a workflow of thousands of jobs) is unreadable drawn node by node,
and ``dot`` needs seconds for it. Above ``GROUP_ABOVE`` tasks, *related* tasks
are drawn as one node with a count, the way workflow systems show task groups:
tasks with the same name stem (``mProject_ID0000042`` -> ``mProject``), the same
kind and the same dependency shape (their dependencies fall in the same groups).
A group never contains one of its own members' dependencies, so the collapsed
drawing is a DAG too. Groups the user expands are drawn task by task.

``compute_layout`` is pure and CPU/process work: the widget runs it in a thread
so the kernel's loop keeps turning, and sends the browser only positions and
edge paths (the browser draws, colours and labels the nodes itself)::

    snapshot (plain tuples, taken on the loop) ──► group ──► dot -Tjson0 ──► Layout dict
                                                    ▲                          │
           order of the previous drawing ───────────┘ (kept where dot allows)  ▼
                                                                    widget.layout (synced)

Stability: ``dot`` orders nodes inside a rank starting from the order it reads
them in, so the previous drawing's order (rank by rank) is fed back on every
edit; nodes an edit does not touch mostly keep their place.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._errors import ConfigError
from ._text import shorten

GROUP_ABOVE = 300  # plans with more tasks than this draw related tasks as one node
MIN_GROUP = 3  # fewer related tasks than this are drawn one by one
MAX_LABEL = 40  # characters of a task name shown in its node
STABLE_UP_TO = 300  # drawings up to this many nodes keep their order across edits
_GLYPH_ROOM = "W "  # dot sizes nodes for this in front of the label: the status mark's place
_SUFFIX = re.compile(r"[\s_\-.:#]*(?:id)?[\s_\-.:#]*\d+$", re.IGNORECASE)
_INSTALL_DOT = (
    "graphviz's `dot` program is not installed: apt-get install graphviz, "
    "conda install -c conda-forge graphviz, or brew install graphviz"
)


class TaskRow(NamedTuple):
    """What layout needs of a task: a snapshot that later edits cannot change under it."""

    id: str
    name: str
    kind: str
    dependencies: tuple[str, ...]
    estimated_time: float | None


@dataclass(frozen=True)
class Group:
    """Related tasks drawn as one node."""

    id: str
    stem: str
    kind: str
    members: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.stem} ×{len(self.members):,}"


def snapshot(graph: Any) -> list[TaskRow]:
    """The plan as plain tuples (cheap; taken on the loop, handed to the layout thread)."""
    return [
        TaskRow(t.id, t.name, t.kind, t.dependencies, t.estimated_time)
        for t in graph.tasks.values()
    ]


def name_stem(name: str) -> str:
    """A task name without its trailing number or id: ``mDiffFit_ID0000007`` -> ``mDiffFit``."""
    stem = _SUFFIX.sub("", name).strip()
    return stem or name


def group_tasks(
    rows: Sequence[TaskRow],
    *,
    above: int = GROUP_ABOVE,
    min_size: int = MIN_GROUP,
    expanded: Iterable[str] = (),
) -> dict[str, Group]:
    """Groups of related tasks (group id -> Group); none for plans of ``above`` tasks or fewer.

    A task's *shape* is its name stem, its kind and the set of shapes of its
    dependencies, so members of a group sit at the same place in the workflow.
    Group ids are hashes of the shape: an edit elsewhere does not rename them.

    Plans without that regularity (every task wired differently) would still draw
    more than ``above`` nodes; they are grouped more coarsely, by name stem, kind
    and *depth* (the longest chain of dependencies above a task). Tasks at one depth
    never depend on each other, so these groups hold no member's dependency either.
    """
    if len(rows) <= above:
        return {}
    by_id = {r.id: r for r in rows}
    shape: dict[str, str] = {}
    depth: dict[str, int] = {}
    by_shape: dict[str, list[str]] = {}
    by_depth: dict[str, list[str]] = {}
    stems: dict[str, tuple[str, str]] = {}
    for tid in _dependency_order(rows):
        row = by_id[tid]
        stem = name_stem(row.name)
        deps = sorted({shape[d] for d in row.dependencies})
        key = _key(stem, row.kind, *deps)
        shape[tid] = key
        by_shape.setdefault(key, []).append(tid)
        stems[key] = (stem, row.kind)
        depth[tid] = 1 + max((depth[d] for d in row.dependencies), default=-1)
        coarse = _key(stem, row.kind, f"depth {depth[tid]}")
        by_depth.setdefault(coarse, []).append(tid)
        stems[coarse] = (stem, row.kind)
    members = by_shape
    if _drawn(by_shape, min_size) > above:
        members = by_depth
    skip = set(expanded)
    order = {tid: i for i, tid in enumerate(by_id)}
    groups = {}
    for key, ids in members.items():
        gid = f"group-{key}"
        if len(ids) >= min_size and gid not in skip:
            ids.sort(key=order.__getitem__)
            groups[gid] = Group(gid, *stems[key], tuple(ids))
    return groups


def _key(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:10]


def _drawn(members: Mapping[str, list[str]], min_size: int) -> int:
    """Nodes a drawing with these groups would have (groups too small stay tasks)."""
    return sum(1 if len(ids) >= min_size else len(ids) for ids in members.values())


def _dependency_order(rows: Sequence[TaskRow]) -> list[str]:
    """Ids with every task after its dependencies (Kahn's algorithm, plan order for ties)."""
    waiting = {r.id: len(r.dependencies) for r in rows}
    children: dict[str, list[str]] = {}
    for r in rows:
        for d in r.dependencies:
            children.setdefault(d, []).append(r.id)
    ready = [r.id for r in rows if not r.dependencies]
    out = []
    while ready:
        tid = ready.pop()
        out.append(tid)
        for child in children.get(tid, ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return out


def compute_layout(
    rows: Sequence[TaskRow],
    *,
    groups: Mapping[str, Group] | None = None,
    critical: Sequence[str] = (),
    previous_order: Sequence[str] = (),
    rankdir: str = "LR",
) -> dict[str, Any]:
    """Positions of the drawing: nodes (tasks or groups) and edge paths, in points.

    Returns ``{"width", "height", "nodes": [[id, x, y, w, h, label, kind, count,
    critical]], "edges": [[from, to, path, count, critical]], "groups": {id: [member
    ids]}, "order": [node ids, rank by rank]}`` with y pointing down (SVG's way).
    """
    groups = dict(groups or {})
    where = {tid: gid for gid, g in groups.items() for tid in g.members}
    on_path = set(critical)
    critical_pairs = set(itertools.pairwise(critical))

    nodes: dict[str, list[Any]] = {}  # visible id -> [label, kind, count, critical]
    for row in rows:
        vid = where.get(row.id, row.id)
        if vid in nodes:
            node = nodes[vid]
            node[3] = node[3] or row.id in on_path
            continue
        if vid in groups:
            g = groups[vid]
            nodes[vid] = [g.label, g.kind, len(g.members), row.id in on_path]
        else:
            label = shorten(row.name, MAX_LABEL)
            minutes = _minutes(row.estimated_time)
            label += "\n" + minutes if minutes else ""
            nodes[vid] = [label, row.kind, 1, row.id in on_path]
    edges: dict[tuple[str, str], list[Any]] = {}  # (from, to) -> [count, critical]
    for row in rows:
        head = where.get(row.id, row.id)
        for dep in row.dependencies:
            tail = where.get(dep, dep)
            edge = edges.setdefault((tail, head), [0, False])
            edge[0] += 1
            edge[1] = edge[1] or (dep, row.id) in critical_pairs

    rank = {vid: i for i, vid in enumerate(previous_order)}
    last = len(rank)
    order = sorted(nodes, key=lambda v: rank.get(v, last))  # kept ones first, in their order
    data = _run_dot(_dot_source(order, nodes, edges, rank, rankdir))
    keep = rank if len(nodes) <= STABLE_UP_TO else {}
    return _read_layout(data, nodes, edges, groups, keep)


def _dot_source(
    order: list[str],
    nodes: Mapping[str, list[Any]],
    edges: Mapping[tuple[str, str], list[Any]],
    rank: Mapping[str, int],
    rankdir: str,
) -> str:
    lines = [
        "digraph plan {",
        f'  graph [rankdir={rankdir}, nodesep=0.25, ranksep=0.45, bgcolor="transparent"];',
        '  node [shape=box, fontname="Helvetica", fontsize=11, margin="0.12,0.06", height=0.4];',
    ]
    if len(nodes) > 300:  # keep dot's crossing minimization affordable on big drawings
        lines.append("  graph [nslimit=2, mclimit=0.5, searchsize=20];")
    for vid in order:
        label, _kind, count, _crit = nodes[vid]
        text = _GLYPH_ROOM + label
        if count > 1:
            text += "  "  # room for the stack's offset
        lines.append(f"  {_q(vid)} [label={_q(text)}];")
    last = len(rank)
    ordered = sorted(edges, key=lambda e: (rank.get(e[0], last), rank.get(e[1], last)))
    for tail, head in ordered:
        weight = ", weight=3" if edges[(tail, head)][1] else ""
        lines.append(f"  {_q(tail)} -> {_q(head)} [arrowsize=0.6{weight}];")
    lines.append("}")
    return "\n".join(lines)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _run_dot(source: str) -> dict[str, Any]:
    try:
        done = subprocess.run(
            ["dot", "-Tjson0"], input=source.encode(), capture_output=True, check=False
        )
    except FileNotFoundError:
        raise ConfigError(_INSTALL_DOT) from None
    if done.returncode != 0:
        raise ConfigError(f"dot failed: {done.stderr.decode(errors='replace').strip()[:300]}")
    return json.loads(done.stdout)


def _read_layout(
    data: Mapping[str, Any],
    nodes: Mapping[str, list[Any]],
    edges: Mapping[tuple[str, str], list[Any]],
    groups: Mapping[str, Group],
    keep: Mapping[str, int],
) -> dict[str, Any]:
    _x0, _y0, width, height = (float(v) for v in data["bb"].split(","))
    objects = data.get("objects", [])
    placed = []
    for obj in objects:
        vid = obj.get("name")
        if vid not in nodes or "pos" not in obj:
            continue
        x, y = (float(v) for v in obj["pos"].split(","))
        w, h = float(obj["width"]) * 72, float(obj["height"]) * 72
        label, kind, count, crit = nodes[vid]
        placed.append([vid, _r(x), _r(height - y), _r(w), _r(h), label, kind, count, crit])
    moved = _keep_order(placed, keep) if keep else set()
    placed.sort(key=lambda n: (n[1], n[2]))  # reading order: rank by rank, top to bottom
    at = {n[0]: n for n in placed}
    drawn = []
    for e in data.get("edges", []):
        tail, head = objects[e["tail"]]["name"], objects[e["head"]]["name"]
        count, crit = edges[(tail, head)]
        if tail in moved or head in moved:
            path = _curve(at[tail], at[head])
        else:
            path = _path(e.get("pos", ""), height)
        drawn.append([tail, head, path, count, crit])
    return {
        "width": _r(width),
        "height": _r(height),
        "nodes": placed,
        "edges": drawn,
        "groups": {gid: list(g.members) for gid, g in groups.items()},
        "order": [n[0] for n in placed],
    }


def _keep_order(placed: list[list[Any]], keep: Mapping[str, int]) -> set[str]:
    """Stability across edits: in each rank, nodes that were drawn before keep their old
    relative order (they trade places, new nodes stay where dot put them). Returns the ids
    that moved; their edges are redrawn as plain curves."""
    columns: dict[float, list[list[Any]]] = {}
    for node in placed:
        columns.setdefault(node[1], []).append(node)
    moved = set()
    for column in columns.values():
        column.sort(key=lambda n: n[2])
        kept = [n for n in column if n[0] in keep]
        wanted = sorted(kept, key=lambda n: keep[n[0]])
        if [n[0] for n in wanted] == [n[0] for n in kept]:
            continue
        # the kept nodes' vertical slots (centre and height), refilled in the old order
        top = kept[0][2] - kept[0][4] / 2
        gaps = [b[2] - b[4] / 2 - (a[2] + a[4] / 2) for a, b in itertools.pairwise(kept)]
        slots = []
        for i, node in enumerate(wanted):
            slots.append(_r(top + node[4] / 2))
            top += node[4] + (gaps[i] if i < len(gaps) else 0)
        for node, y in zip(wanted, slots, strict=True):
            if node[2] != y:
                node[2] = y
                moved.add(node[0])
    return moved


def _curve(tail: list[Any], head: list[Any]) -> str:
    """A left-to-right curve from one node's right side to the next one's left side."""
    x1, y1 = tail[1] + tail[3] / 2, tail[2]
    x2, y2 = head[1] - head[3] / 2, head[2]
    bend = max(20.0, (x2 - x1) / 2)
    return (
        f"M{_r(x1)},{_r(y1)}C{_r(x1 + bend)},{_r(y1)} {_r(x2 - bend)},{_r(y2)} "
        f"{_r(x2 - 7)},{_r(y2)}L{_r(x2)},{_r(y2)}"
    )


def _path(pos: str, height: float) -> str:
    """dot's spline ``e,x,y p0 p1 ...`` as an SVG path ending at the arrow's tip."""
    end = None
    points = []
    for part in pos.split():
        if part.startswith("e,"):
            _, x, y = part.split(",")
            end = (float(x), height - float(y))
        elif part.startswith("s,"):
            continue
        else:
            x, y = part.split(",")
            points.append((float(x), height - float(y)))
    if not points:
        return ""
    d = [f"M{_r(points[0][0])},{_r(points[0][1])}"]
    for i in range(1, len(points) - 2, 3):
        (x1, y1), (x2, y2), (x3, y3) = points[i : i + 3]
        d.append(f"C{_r(x1)},{_r(y1)} {_r(x2)},{_r(y2)} {_r(x3)},{_r(y3)}")
    if end is not None:
        d.append(f"L{_r(end[0])},{_r(end[1])}")
    return "".join(d)


def _r(value: float) -> float:
    return round(value, 1)


def _minutes(minutes: float | None) -> str:
    from ._render import format_minutes

    return format_minutes(minutes)
