"""Plans shaped as graphs: TaskBench answers, node/edge lists and LLMCompiler text plans.

``_parse`` reads plans that are lists of tasks each naming its dependencies.
Many planners write the graph differently, and this module turns those shapes
into the same ``Entry`` list:

- TaskBench: ``{"task_steps": [...], "task_nodes": [{"task", "arguments"}],
  "task_links": [{"source", "target"}]}``. An argument ``<node-j>`` means "the
  output of node j"; links name nodes by their task name. MiniMax-style answers
  leave the links out and carry every dependency as a ``<node-j>`` argument.
- Edges beside a task list: ``{"nodes": [...], "edges": [{"source"|"from",
  "target"|"to"}]}`` (also ``links``), or ``[a, b]`` pairs.
- LLMCompiler text: numbered lines ``1. tool(args)``, where ``$1`` / ``${1}``
  stand for step 1's output, ending with ``join()``.

Tool arguments are kept on the task (``Entry.arguments``), with references to
other tasks rewritten as ``${id}``, so the task's action can be given them.
Every defect is named in the answer's own terms ("node 2 (Translation) uses its
own output <node-2>", "task_links[0].target 'Output' names no task node").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from typing import Any

from ._errors import PlanError
from ._parse import Entry, RawPlan, dependency_refs, id_text, optional_str

REF = re.compile(r"\$\{([A-Za-z0-9_][A-Za-z0-9_.\-]{0,63})\}")  # ${id}: another task's result


def ref(task_id: str) -> str:
    """How arguments refer to the result of task ``task_id``."""
    return "${" + task_id + "}"


def map_strings(value: Any, change: Any) -> Any:
    """``value`` with ``change`` applied to every string inside it (lists and dicts walked)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list | tuple):
        return [map_strings(v, change) for v in value]
    if isinstance(value, Mapping):
        return {k: map_strings(v, change) for k, v in value.items()}
    return value


def strings_in(value: Any) -> Iterator[str]:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))


def summarize(problems: list[str]) -> str:
    unique = list(dict.fromkeys(problems))
    if len(unique) == 1:
        return unique[0]
    shown = "; ".join(unique[:5])
    more = f"; and {len(unique) - 5} more" if len(unique) > 5 else ""
    return f"the plan has {len(unique)} problems: {shown}{more}"


# --- TaskBench -------------------------------------------------------------------------

_NODE_REF = re.compile(r"<node-(\d+)>")
_STEP_PREFIX = re.compile(r"^\s*step\s*\d+\s*[:.)-]\s*", re.IGNORECASE)


def is_taskbench(data: Mapping[str, Any]) -> bool:
    return isinstance(data.get("task_nodes"), list)


def read_taskbench(data: Mapping[str, Any]) -> RawPlan:
    """A TaskBench (or MiniMax-style) answer: nodes, ``<node-j>`` arguments, named links."""
    nodes = data["task_nodes"]
    if not nodes:
        raise PlanError("the plan has no tasks")
    problems: list[str] = []
    names: list[str] = []
    for i, node in enumerate(nodes):
        if isinstance(node, Mapping):
            name = optional_str(node.get("task") or node.get("name") or node.get("tool"))
        elif isinstance(node, str):
            name = optional_str(node)
        else:
            problems.append(f"task_nodes[{i}] is not an object")
            name = None
        names.append(name or f"node {i}")
    if problems:
        raise PlanError(summarize(problems))
    ids = _unique_ids(names)
    n = len(nodes)
    arguments = [node.get("arguments") if isinstance(node, Mapping) else None for node in nodes]
    uses = [
        (i, int(j))
        for i, args in enumerate(arguments)
        for text in strings_in(args)
        for j in _NODE_REF.findall(text)
    ]
    base = _node_base(uses, n, names, problems)
    deps: list[list[int]] = [[] for _ in nodes]
    for i, j in uses:
        if 0 <= j - base < n and j - base != i:
            deps[i].append(j - base)
    links = data.get("task_links")
    if links is not None:
        _read_links(links, names, deps, problems)
    if problems:
        bad = [ids[i] for i, _j in uses if not 0 <= _j - base < n or _j - base == i]
        raise PlanError(summarize(problems), ids=dict.fromkeys(bad))
    steps = data.get("task_steps")
    entries = []
    for i, node in enumerate(nodes):
        description = ""
        if isinstance(steps, list) and len(steps) == n and isinstance(steps[i], str):
            description = _STEP_PREFIX.sub("", steps[i]).strip()

        def canonical(text: str, _base: int = base) -> str:
            def swap(match: re.Match[str]) -> str:
                j = int(match.group(1)) - _base
                return ref(ids[j]) if 0 <= j < n else match.group(0)

            return _NODE_REF.sub(swap, text)

        extra = (
            {k: v for k, v in node.items() if k not in ("task", "name", "tool", "arguments")}
            if isinstance(node, Mapping)
            else {}
        )
        entries.append(
            Entry(
                index=i,
                raw_id=ids[i],
                name=names[i],
                description=description,
                dependencies=[ids[p] for p in dict.fromkeys(deps[i])],
                estimated_time=None,
                kind="llm",
                arguments=_named_arguments(map_strings(arguments[i], canonical)),
                extra=extra,
            )
        )
    return RawPlan(entries)


def _unique_ids(names: list[str]) -> list[str]:
    from ._plan import safe_id

    ids: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = safe_id(name)
        candidate, k = base, 2
        while candidate in taken:
            candidate, k = f"{base[:60]}_{k}", k + 1
        taken.add(candidate)
        ids.append(candidate)
    return ids


def _node_base(uses: list[tuple[int, int]], n: int, names: list[str], problems: list[str]) -> int:
    """Whether ``<node-j>`` counts from 0 or 1 here, with the references' defects noted.

    TaskBench counts from 0 and so do most models; an answer that uses ``<node-N>``
    (N nodes) and never ``<node-0>`` counts from 1. When counting from 0 breaks
    the plan and counting from 1 would not, and nothing in the answer says which
    it means, the answer is ambiguous and refused with both readings named.
    """
    if not uses:
        return 0
    used = {j for _i, j in uses}
    if 0 not in used and max(used) == n:
        base, why = 1, f"nodes count from 1 here: <node-{n}> is used and <node-0> is not"
    elif 0 in used:
        base, why = 0, "nodes count from 0 here: <node-0> is used"
    else:
        base, why = 0, "nodes count from 0 in TaskBench answers"
    defects = []
    for i, j in uses:
        node = f"node {i} ({names[i]})"
        if not 0 <= j - base < n:
            defects.append(f"{node} uses <node-{j}>, which names no node ({why})")
        elif j - base == i:
            defects.append(f"{node} uses its own output <node-{j}>")
    defects = list(dict.fromkeys(defects))
    pinned = 0 in used or max(used) >= n
    other_reading_holds = all(0 <= j - 1 < n and j - 1 != i for i, j in uses)
    if defects and not pinned and other_reading_holds:
        problems.append(
            f"the <node-j> references are ambiguous: counted from 0 (TaskBench's convention) "
            f"{'; '.join(defects)}; counted from 1 they would hold, and the answer does not "
            "say which it means"
        )
    else:
        problems.extend(defects)
    return base


def _read_links(links: Any, names: list[str], deps: list[list[int]], problems: list[str]) -> None:
    if not isinstance(links, list):
        problems.append("task_links must be a list of {source, target} objects")
        return
    for k, link in enumerate(links):
        ends = _edge_ends(link)
        if ends is None:
            problems.append(f"task_links[{k}] is not a {{source, target}} link")
            continue
        where = f"task_links[{k}]"
        src = _node_named(ends[0], names, f"{where}.source", problems)
        dst = _node_named(ends[1], names, f"{where}.target", problems)
        if src is None or dst is None:
            continue
        if src == dst:
            problems.append(f"{where} links node {src} ({names[src]}) to itself")
        else:
            deps[dst].append(src)


def _node_named(value: Any, names: list[str], where: str, problems: list[str]) -> int | None:
    text = optional_str(value) if isinstance(value, str | int | float) else None
    if text is None:
        problems.append(f"{where} is missing")
        return None
    found = [i for i, name in enumerate(names) if name == text]
    if not found:
        folded = " ".join(text.casefold().split())
        found = [i for i, name in enumerate(names) if " ".join(name.casefold().split()) == folded]
    if len(found) == 1:
        return found[0]
    if found:
        problems.append(f"{where} {text!r} names {len(found)} task nodes (ambiguous)")
    else:
        problems.append(f"{where} {text!r} names no task node")
    return None


def _named_arguments(arguments: Any) -> Any:
    """``[{"name": n, "value": v}, ...]`` as ``{n: v}``; anything else as written."""
    if (
        isinstance(arguments, list)
        and arguments
        and all(
            isinstance(a, Mapping) and set(a) == {"name", "value"} and isinstance(a["name"], str)
            for a in arguments
        )
    ):
        named = {a["name"]: a["value"] for a in arguments}
        if len(named) == len(arguments):
            return named
    return arguments


# --- edges beside a task list --------------------------------------------------------------

_SOURCE_KEYS = ("source", "from", "src", "parent", "u")
_TARGET_KEYS = ("target", "to", "dst", "child", "v")


def _edge_ends(edge: Any) -> tuple[Any, Any] | None:
    if isinstance(edge, Mapping):
        src = next((edge[k] for k in _SOURCE_KEYS if k in edge), None)
        dst = next((edge[k] for k in _TARGET_KEYS if k in edge), None)
        return (src, dst) if src is not None or dst is not None else None
    if isinstance(edge, list | tuple) and len(edge) == 2:
        return edge[0], edge[1]
    return None


def apply_edges(entries: list[Entry], holder: Mapping[str, Any]) -> None:
    """Add the dependencies an ``edges``/``links`` list beside the tasks names (source -> target).

    A list none of whose items looks like an edge is not an edge list (``links``
    may be URLs) and is left alone; in one that is, every item must name its
    two tasks exactly once.
    """
    from ._parse import EDGE_KEYS

    problems: list[str] = []
    for key in EDGE_KEYS:
        edges = holder.get(key)
        if not isinstance(edges, list) or not any(_edge_ends(e) for e in edges):
            continue
        for k, edge in enumerate(edges):
            ends = _edge_ends(edge)
            where = f"{key}[{k}]"
            if ends is None:
                problems.append(f"{where} is not a {{source, target}} edge")
                continue
            src = _entry_named(ends[0], entries, f"{where}.source", problems)
            dst = _entry_named(ends[1], entries, f"{where}.target", problems)
            if src is None or dst is None:
                continue
            if src is dst:
                problems.append(f"{where} links task {src.raw_id!r} to itself")
            elif src.raw_id not in dst.dependencies:
                dst.dependencies.append(src.raw_id)
    if problems:
        raise PlanError(summarize(problems))


def _entry_named(value: Any, entries: list[Entry], where: str, problems: list[str]) -> Entry | None:
    if value is None or isinstance(value, Mapping | list):
        problems.append(f"{where} is missing")
        return None
    text = id_text(value)
    for matches in (
        [e for e in entries if e.raw_id == text],
        [e for e in entries if e.name == text],
        [e for e in entries if e.name.casefold() == text.casefold()],
    ):
        if len(matches) == 1:
            return matches[0]
        if matches:
            problems.append(f"{where} {text!r} names {len(matches)} tasks (ambiguous)")
            return None
    problems.append(f"{where} {text!r} names no task")
    return None


# --- LLMCompiler text plans ----------------------------------------------------------------

# decided by the first line that is either a numbered call or holds a JSON bracket
_FIRST_SIGN = re.compile(r"(?m)^[ \t]*\d+[ \t]*\.[ \t]*[A-Za-z_][\w.-]*[ \t]*\(|[{\[]")
_STEP = re.compile(r"^(\d+)\s*\.\s*([A-Za-z_][\w.-]*)\s*\((.*)\)\s*(?:#.*)?$")
_STEP_START = re.compile(r"^\d+\s*\.\s*[A-Za-z_][\w.-]*\s*\(")
_UNNUMBERED = re.compile(r"^[A-Za-z_][\w.-]*\s*\(.*\)\s*$")
_JOIN = re.compile(r"^(?:\d+\s*\.\s*)?join\s*\(\s*\)\s*(?:#.*)?$")
_DOLLAR = re.compile(r"\$\{?(\d+)\}?")
_QUOTED_OR_DOLLAR = re.compile(r"(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')|\$\{?(\d+)\}?")
_END_MARK = "<END_OF_PLAN>"


def text_plan_sign(text: str) -> bool | None:
    """True for an LLMCompiler text plan, False for JSON, None while the text cannot tell."""
    match = _FIRST_SIGN.search(text)
    if match is None:
        return None
    return match.group() not in ("{", "[")


def is_text_plan(text: str) -> bool:
    return bool(text_plan_sign(text))


class TextPlanReader:
    """Reads an LLMCompiler plan line by line (a whole text, or lines as they stream in)."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.joined = False
        self.problems: list[str] = []
        self._thought: str | None = None
        self._lines = 0

    def line(self, text: str) -> Entry | None:
        """Read one line; the step it completes, if any."""
        self._lines += 1
        if self.joined:
            return None
        line = text.replace(_END_MARK, "").strip()
        if not line or line.startswith("```"):
            return None
        if line.lower().startswith("thought:"):
            self._thought = line[len("thought:") :].strip() or None
            return None
        if _JOIN.match(line):
            self.joined = True
            return None
        match = _STEP.match(line)
        if match is None:
            if _STEP_START.match(line) or _UNNUMBERED.match(line):
                preview = line if len(line) <= 60 else line[:59] + "…"
                self.problems.append(
                    f"line {self._lines} looks like a step but is not 'N. tool(arguments)': "
                    f"{preview!r}"
                )
            return None  # prose between steps
        number, tool, args = match.groups()
        entry = Entry(
            index=len(self.entries),
            raw_id=str(int(number)),
            name=tool,
            description=self._thought or f"{tool}({args.strip()})",
            dependencies=dependency_refs(list(dict.fromkeys(_DOLLAR.findall(args)))),
            estimated_time=None,
            kind="llm",
            arguments=_call_arguments(args),
        )
        self._thought = None
        self.entries.append(entry)
        return entry

    def finish(self) -> RawPlan:
        if not self.joined:
            last = f"after step {self.entries[-1].raw_id} " if self.entries else ""
            raise PlanError(
                f"the text plan does not end with join(): it looks cut off {last}"
                "(the model may have hit its length limit)"
            )
        if self.problems:
            raise PlanError(summarize(self.problems))
        if not self.entries:
            raise PlanError("the plan has no tasks")
        return RawPlan(self.entries)


def read_text_plan(text: str) -> RawPlan:
    reader = TextPlanReader()
    for line in text.split("\n"):
        reader.line(line)
    return reader.finish()


def _call_arguments(text: str) -> Any:
    """A call's arguments as data: positional ones as a list, keywords as a dict.

    ``$1`` outside a string becomes the string ``"${1}"``; anything Python's
    literal syntax cannot read is kept as the text it is.
    """
    quoted = _QUOTED_OR_DOLLAR.sub(
        lambda m: m.group(1) or '"' + ref(m.group(2)) + '"', text.strip()
    )

    def canonical(value: str) -> str:
        return _DOLLAR.sub(lambda m: ref(str(int(m.group(1)))), value)

    if not quoted:
        return []
    try:
        call = ast.parse(f"f({quoted})", mode="eval").body
        assert isinstance(call, ast.Call)
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (SyntaxError, ValueError, TypeError, AssertionError, RecursionError, MemoryError):
        return [canonical(text.strip())]
    if kwargs and args:
        return map_strings({"args": args, **kwargs}, canonical)
    return map_strings(kwargs if kwargs else args, canonical)
