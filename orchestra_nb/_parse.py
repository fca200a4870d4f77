"""Tolerant reading of plans the way LLMs really write them.

``read_plan`` turns whatever a model answered (or a dict/list a user built) into a
list of normalized task entries; ``TaskGraph`` then validates the graph. This
module finds the plan in the text and reads the task-list shapes (the seed
``subtasks`` format and its many variants); the graph-shaped formats (TaskBench,
node/edge graphs, LLMCompiler text plans) live in ``_plan_shapes``, the JSON
reading itself in ``_json_text``.

What is accepted: JSON in ``` fences with prose around it, the slips models make
(see ``_json_text``), ``subtasks``/``tasks``/``steps``/``plan``/``nodes`` keys, a bare
list, task objects written one after another without a list, a mapping of id ->
task, integer ids, HuggingGPT-style ``{"task", "id", "dep"}`` entries with ``-1``
meaning "no dependency", dependencies as a list, a comma separated string, a
single value or null, ``edges``/``links`` lists beside the tasks, and durations as
numbers (minutes) or strings such as ``"15 minutes"``, ``"1h"``, ``"2h30m"``,
``"10-15 min"`` or ``"15分钟"``.

Nothing is silently lost: an answer that stops inside its JSON (a model cut off
by its token limit), two different plans in one answer, or task objects outside
the plan's task list are refused with a ``PlanError`` that says so, never read
as a shorter plan.

Hostile input is bounded: a plan text may be ``MAX_PLAN_CHARS`` long,
``MAX_DEPTH`` levels deep and hold ``MAX_PLAN_TASKS`` tasks (counted before
any is built); strict JSON is read at C speed, and text that needs mending is
read in one linear pass, up to ``MAX_REPAIR_CHARS`` from its first bracket.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import PlanError
from ._json_text import (
    MAX_DEPTH,
    MAX_REPAIR_CHARS,
    LimitExceeded,
    Scan,
    TopValue,
    check_depth,
    scan_text,
    size_error,
)
from ._kinds import DEFAULT_KIND, KIND_SYNONYMS

MAX_PLAN_CHARS = 16_000_000  # plan files and stored run records; about 80,000 tasks
MAX_PLAN_TASKS = 100_000  # tasks are counted before any is built
PLAN_KEYS = ("subtasks", "tasks", "sub_tasks", "steps", "plan", "nodes", "items", "todo")
EDGE_KEYS = ("edges", "links", "task_links")
ID_KEYS = ("id", "task_id", "taskId", "step_id", "step")
NAME_KEYS = ("name", "title", "task_name", "task", "label")
DESCRIPTION_KEYS = ("description", "desc", "details", "instruction", "instructions", "prompt")
DEPENDENCY_KEYS = (
    "dependencies",
    "depends_on",
    "dependsOn",
    "deps",
    "dep",
    "requires",
    "prerequisites",
    "after",
    "parents",
)
_TIME_KEYS = ("estimated_time", "estimatedTime", "estimate", "duration", "time", "eta")
_TASK_KEYS = frozenset(ID_KEYS + NAME_KEYS + DESCRIPTION_KEYS + DEPENDENCY_KEYS)
_NONE_WORDS = {"", "none", "null", "n/a", "na", "-", "[]", "nothing", "无"}
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass
class Entry:
    """One task as read from a plan, before ids are made safe and references resolved.

    ``arguments`` may hold references to other tasks' results written ``${raw_id}``.
    """

    index: int
    raw_id: str
    name: str
    description: str
    dependencies: list[str]
    estimated_time: float | None
    kind: str
    function: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    priority: float | None = None
    resources: dict[str, int] = field(default_factory=dict)
    retries: int | None = None
    timeout: float | None = None
    approval: bool = False
    arguments: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawPlan:
    entries: list[Entry]
    goal: str | None = None
    name: str | None = None


def read_plan(data: Any, *, max_tasks: int = MAX_PLAN_TASKS) -> RawPlan:
    """Normalize a plan given as text, dict or list into entries (no graph validation yet)."""
    from . import _plan_shapes

    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        if _plan_shapes.is_text_plan(data):
            raw = _plan_shapes.read_text_plan(data)
            check_task_count(len(raw.entries), max_tasks)
            return raw
        data = decode_plan_text(data)
    else:
        try:
            check_depth(data, what="the plan")
        except LimitExceeded as exc:
            raise PlanError(str(exc)) from None
    return read_plan_value(data, max_tasks=max_tasks)


def read_plan_value(data: Any, *, max_tasks: int = MAX_PLAN_TASKS) -> RawPlan:
    """Entries from a plan already read into Python (a dict or a list)."""
    from . import _plan_shapes

    goal = name = None
    if isinstance(data, Mapping):
        if _plan_shapes.is_taskbench(data):
            check_task_count(len(data["task_nodes"]), max_tasks)
            return _plan_shapes.read_taskbench(data)
        goal = optional_str(data.get("goal"))
        name = optional_str(data.get("name")) if find_task_list(data) is not None else None
    items, holder = _task_items(data)
    check_task_count(len(items), max_tasks)
    entries = [read_entry(i, item) for i, item in enumerate(items)]
    if holder is not None:
        _plan_shapes.apply_edges(entries, holder)
    return RawPlan(entries, goal=goal, name=name)


def check_task_count(count: int, max_tasks: int) -> None:
    if count <= max_tasks:
        return
    if max_tasks == MAX_PLAN_TASKS:
        raise PlanError(
            f"the plan has {count} tasks, more than the {MAX_PLAN_TASKS} limit (MAX_PLAN_TASKS)"
        )
    raise PlanError(f"the plan has {count} subtasks; use at most {max_tasks}")


# --- finding the plan in an answer ------------------------------------------------------


def decode_plan_text(text: str) -> Any:
    """The plan a text holds, as a Python value; PlanError if it holds none, or a cut one."""
    if len(text) > MAX_PLAN_CHARS:
        too_big = size_error("the plan text", len(text), MAX_PLAN_CHARS, "MAX_PLAN_CHARS")
        raise PlanError(str(too_big))
    stripped = text.strip()
    if not stripped:
        raise PlanError("the answer is empty: expected a JSON plan")
    if stripped[0] in "{[":
        value = _strict(stripped)
        if value is not _NOTHING:  # read the way a scan would have read it
            return choose_plan(Scan(values=[TopValue(value, 0, len(text), False)]), text)
    start = first_bracket(text)
    if start < 0:
        raise PlanError(f"the answer contains no JSON plan: {_preview(stripped)}")
    if len(text) - start > MAX_REPAIR_CHARS:
        # too big to mend: only strict JSON in the one fence there is will do
        fences = _FENCE.findall(text)
        value = _strict(fences[0][1].strip()) if len(fences) == 1 else _NOTHING
        if value is not _NOTHING:
            return choose_plan(Scan(values=[TopValue(value, start, len(text), False)]), text)
        raise PlanError(
            f"the answer is not valid JSON and too large to repair "
            f"({_size(len(text) - start)} > {_size(MAX_REPAIR_CHARS)}, MAX_REPAIR_CHARS): "
            f"{_preview(text[start : start + 1000])}"
        )
    try:
        scan = scan_text(text, max_chars=MAX_PLAN_CHARS, what="the plan", setting="MAX_PLAN_CHARS")
    except LimitExceeded as exc:
        raise PlanError(str(exc)) from None
    return choose_plan(scan, text)


_NOTHING = object()


def _strict(text: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError:
        return _NOTHING
    except RecursionError:  # only nesting far deeper than any plan gets here
        raise PlanError(
            f"the plan nests JSON more than {MAX_DEPTH} levels deep "
            f"(the limit is MAX_DEPTH = {MAX_DEPTH})"
        ) from None
    try:
        check_depth(value, what="the plan")
    except LimitExceeded as exc:
        raise PlanError(str(exc)) from None
    return value


def choose_plan(scan: Scan, text: str) -> Any:
    """The one plan among the JSON values a scan found, or a PlanError saying why not."""
    if scan.open is not None:
        raise PlanError(_cut_off(scan.open, scan.open_ids))
    plans, tasks, others = [], [], []
    for found in scan.values:
        value = found.value
        if is_plan_container(value):
            if all(value != p.value for p in plans):
                plans.append(found)
        elif is_task_object(value):
            tasks.append(found)
        elif value:
            others.append(found)
    if len(plans) > 1:
        where = ", ".join(str(p.start) for p in plans[:5])
        raise PlanError(
            f"the answer holds {len(plans)} different plans (at characters {where}): "
            "answer with one"
        )
    if plans and tasks:
        names = ", ".join(repr(_label(t.value)) for t in tasks[:5])
        raise PlanError(
            f"{len(tasks)} task object(s) are outside the plan's task list "
            f"(from character {tasks[0].start}): {names}"
        )
    if plans:
        return plans[0].value
    if tasks:
        return [t.value for t in tasks]  # objects written one after another, without a list
    mapping = next((o.value for o in others if isinstance(o.value, Mapping)), None)
    if mapping is not None:
        return mapping  # read_plan_value names what is missing
    raise PlanError(f"the answer contains no JSON plan: {_preview(text.strip())}")


def is_plan_container(value: Any) -> bool:
    """A list of task objects (or an empty one), or an object holding such a list."""
    if isinstance(value, list):
        return not value or any(isinstance(v, Mapping) for v in value)
    if not isinstance(value, Mapping):
        return False
    if "task_nodes" in value:
        return True
    lists = [value[k] for k in PLAN_KEYS if isinstance(value.get(k), list | Mapping)]
    if any(k in _TASK_KEYS for k in value):  # a task with a list of its own ("steps": [...])
        return any(is_plan_container(v) and v for v in lists)
    return bool(lists)


def is_task_object(value: Any) -> bool:
    return isinstance(value, Mapping) and any(k in _TASK_KEYS for k in value)


def _cut_off(partial: Any, still_open: set[int]) -> str:
    if isinstance(partial, Mapping):
        items = partial.get("task_nodes") if "task_nodes" in partial else find_task_list(partial)
    else:
        items = partial
    done = 0
    if isinstance(items, list):
        done = sum(isinstance(i, Mapping) and id(i) not in still_open for i in items)
    if not done:
        return (
            "the plan has no tasks: the answer stops before its first task is complete "
            "(it looks cut off, e.g. by the model's length limit)"
        )
    return (
        f"the answer is cut off after {done} complete task(s): its JSON never closes, so "
        "the rest of the plan is missing (the model may have hit its length limit)"
    )


def _label(task: Mapping[str, Any]) -> str:
    for key in (*NAME_KEYS, *ID_KEYS):
        if key in task and isinstance(task[key], str | int):
            return str(task[key])
    return "?"


def first_bracket(text: str) -> int:
    positions = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    return min(positions) if positions else -1


def _size(chars: int) -> str:
    return f"{chars / 1e6:.2f} MB"


def _preview(text: str, limit: int = 80) -> str:
    one_line = " ".join(text[: limit * 8].split())  # a bounded head: the text may be huge
    return repr(one_line if len(one_line) <= limit else one_line[: limit - 1] + "…")


# --- finding the task list ----------------------------------------------------------


def find_task_list(data: Mapping[str, Any]) -> list[Any] | None:
    found = _find_task_list(data)
    return found[0] if found is not None else None


def _find_task_list(data: Mapping[str, Any]) -> tuple[list[Any], Mapping[str, Any]] | None:
    """The task list and the object that holds it (where edges lists sit beside it)."""
    for key in PLAN_KEYS:
        value = data.get(key)
        if isinstance(value, list):
            return value, data
        if isinstance(value, Mapping):
            inner = _find_task_list(value)
            if inner is not None:
                return inner
            if value and all(isinstance(v, Mapping) for v in value.values()):
                return _mapping_to_list(value), data
    return None


def _mapping_to_list(mapping: Mapping[str, Any]) -> list[Any]:
    out = []
    for key, value in mapping.items():
        item = dict(value)
        if not any(k in item for k in ID_KEYS):
            item["id"] = key
        out.append(item)
    return out


def _task_items(data: Any) -> tuple[list[Any], Mapping[str, Any] | None]:
    holder = None
    if isinstance(data, list):
        items = data
    elif isinstance(data, Mapping):
        found = _find_task_list(data)
        if found is not None:
            items, holder = found
        elif any(k in data for k in DESCRIPTION_KEYS + NAME_KEYS) and not all(
            isinstance(v, Mapping) for v in data.values()
        ):
            items = [data]  # a single task on its own
        elif data and all(isinstance(v, Mapping) for v in data.values()):
            items = _mapping_to_list(data)
        else:
            keys = ", ".join(sorted(map(str, data))[:8])
            raise PlanError(
                f"the plan has no task list: expected a 'subtasks' list, got keys {keys}"
            )
    else:
        raise PlanError(f"a plan must be a JSON object or list, not {type(data).__name__}")
    if not items:
        raise PlanError("the plan has no tasks")
    return items, holder


# --- one entry ------------------------------------------------------------------------


def read_entry(index: int, item: Any) -> Entry:
    """One task object of the seed format (or a variant of it) as an Entry."""
    if not isinstance(item, Mapping):
        raise PlanError(
            f"plan entry {index + 1} is not an object: {_preview(json.dumps(item, default=str))}"
        )
    used: set[str] = set()

    def pick(keys: tuple[str, ...]) -> Any:
        for key in keys:
            if key in item:
                used.add(key)
                return item[key]
        return None

    raw_id = pick(ID_KEYS)
    hugging_task = item.get("task") if "dep" in item or "args" in item else None
    name = pick(NAME_KEYS)
    description = pick(DESCRIPTION_KEYS)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raw_id = f"task_{index + 1}"
    raw_id = id_text(raw_id)
    if isinstance(name, Mapping | list):
        name = json.dumps(name, ensure_ascii=False)
    name = optional_str(name) or raw_id
    args = item.get("args")
    if description is None and hugging_task is not None and isinstance(args, Mapping):
        description = "; ".join(f"{k}: {v}" for k, v in args.items())
    if isinstance(description, Mapping | list):
        description = json.dumps(description, ensure_ascii=False)
    deps = dependency_refs(pick(DEPENDENCY_KEYS))
    estimated = parse_duration_minutes(pick(_TIME_KEYS), what=f"task {raw_id!r}: estimated_time")
    kind = _kind(item, used)
    function = optional_str(pick(("function", "func", "callable")))
    arguments = pick(("arguments",))
    params = item.get("params")
    if params is not None:
        used.add("params")
        if not isinstance(params, Mapping):
            raise PlanError(f"task {raw_id!r}: params must be an object, not {params!r}")
        params = dict(params)
    entry = Entry(
        index=index,
        raw_id=raw_id,
        name=name,
        description=optional_str(description) or "",
        dependencies=deps,
        estimated_time=estimated,
        kind=kind,
        function=function,
        params=params or {},
        priority=_number(pick(("priority",)), f"task {raw_id!r}: priority"),
        resources=_resources(pick(("resources", "pools", "pool")), raw_id),
        retries=_int(pick(("retries", "max_retries")), f"task {raw_id!r}: retries"),
        timeout=parse_duration_seconds(pick(("timeout",)), what=f"task {raw_id!r}: timeout"),
        approval=_flag(pick(("approval", "requires_approval", "needs_approval")), raw_id),
        arguments=arguments,
    )
    entry.extra = {str(k): v for k, v in item.items() if k not in used}
    return entry


def id_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def optional_str(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _kind(item: Mapping[str, Any], used: set[str]) -> str:
    raw = item.get("kind")
    if raw is not None:
        used.add("kind")
        text = str(raw).strip().lower()
        return KIND_SYNONYMS.get(text, text or DEFAULT_KIND)
    raw = item.get("type")
    if isinstance(raw, str) and raw.strip().lower() in KIND_SYNONYMS:
        used.add("type")
        return KIND_SYNONYMS[raw.strip().lower()]
    return DEFAULT_KIND


def dependency_refs(value: Any) -> list[str]:
    """Dependencies as written, as strings; -1 (HuggingGPT's "none") and blanks dropped."""
    if value is None:
        return []
    if isinstance(value, str):
        if value.strip().lower() in _NONE_WORDS:
            return []
        parts: list[Any] = [p for p in re.split(r"[,;\n]", value)]
    elif isinstance(value, list | tuple | set):
        parts = []
        for v in value:
            if isinstance(v, list | tuple):
                parts.extend(v)
            elif isinstance(v, Mapping):
                parts.append(next((v[k] for k in ID_KEYS if k in v), v.get("name")))
            else:
                parts.append(v)
    else:
        parts = [value]
    refs: list[str] = []
    for part in parts:
        if part is None or part == -1 or part == "-1":
            continue
        text = id_text(part)
        if text.lower() in _NONE_WORDS:
            continue
        if text not in refs:
            refs.append(text)
    return refs


def _resources(value: Any, raw_id: str) -> dict[str, int]:
    if value is None:
        return {}
    if isinstance(value, str):
        return {value.strip(): 1} if value.strip() else {}
    if isinstance(value, list | tuple):
        return {str(v).strip(): 1 for v in value if str(v).strip()}
    if isinstance(value, Mapping):
        out = {}
        for pool, units in value.items():
            n = _int(units, f"task {raw_id!r}: resources[{pool!r}]")
            if n is None or n < 1:
                raise PlanError(f"task {raw_id!r}: resources[{pool!r}] must be a positive integer")
            out[str(pool)] = n
        return out
    raise PlanError(
        f"task {raw_id!r}: resources must be an object like {{'llm': 1}}, not {value!r}"
    )


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise PlanError(f"{what} must be a number, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{what} must be a number, not {value!r}") from None
    if not math.isfinite(number):
        raise PlanError(f"{what} must be finite, not {value!r}")
    return number


def _flag(value: Any, raw_id: str) -> bool:
    """A yes/no plan field: JSON booleans, and the words models write for them."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "yes", "y", "1", "required"):
        return True
    if text in ("false", "no", "n", "0", "", "none"):
        return False
    raise PlanError(f"task {raw_id!r}: approval must be true or false, not {value!r}", ids=[raw_id])


def _int(value: Any, what: str) -> int | None:
    number = _number(value, what)
    if number is None:
        return None
    if not number.is_integer() or number < 0:
        raise PlanError(f"{what} must be a whole number ≥ 0, not {value!r}")
    return int(number)


# --- durations ----------------------------------------------------------------------
# Written by hand: the maintained duration parsers (pytimeparse, isodate) know neither
# ranges like "10-15 min" nor Chinese units, and this is thirty lines.

_UNIT_MINUTES = {
    "s": 1 / 60, "sec": 1 / 60, "secs": 1 / 60, "second": 1 / 60, "seconds": 1 / 60, "秒": 1 / 60,
    "秒钟": 1 / 60,
    "m": 1.0, "min": 1.0, "mins": 1.0, "minute": 1.0, "minutes": 1.0, "分": 1.0, "分钟": 1.0,
    "h": 60.0, "hr": 60.0, "hrs": 60.0, "hour": 60.0, "hours": 60.0, "小时": 60.0, "时": 60.0,
    "个小时": 60.0,
    "d": 1440.0, "day": 1440.0, "days": 1440.0, "天": 1440.0,
    "w": 10080.0, "wk": 10080.0, "week": 10080.0, "weeks": 10080.0, "周": 10080.0,
}  # fmt: skip
_NUM = r"\d+(?:\.\d+)?"
_PART = re.compile(rf"({_NUM})\s*(?:-|–|~|to|至|到)?\s*({_NUM})?\s*([a-z]+|[\u4e00-\u9fff]+)?")
_ISO = re.compile(
    r"^P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration_minutes(value: Any, *, what: str = "duration") -> float | None:
    """A duration in minutes from a number (already minutes) or text; None when absent.

    A range ("10-15 minutes") counts as its midpoint; unknown text is an error naming it.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise PlanError(f"{what} must be a duration, not {value!r}")
    if isinstance(value, int | float):
        minutes = float(value)
    else:
        text = str(value).strip().lower().replace(",", "")
        if text in _NONE_WORDS or text in {"unknown", "tbd", "?"}:
            return None
        if text in {"半小时", "half an hour", "half hour"}:
            return 30.0
        minutes = _parse_duration_text(text, what)
    if not math.isfinite(minutes) or minutes < 0:
        raise PlanError(f"{what} must be a non-negative duration, not {value!r}")
    return minutes


def parse_duration_seconds(value: Any, *, what: str = "duration") -> float | None:
    """Like parse_duration_minutes, but a bare number means seconds (timeouts are in seconds)."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        number = _number(value, what)
        if number is not None and number <= 0:
            raise PlanError(f"{what} must be positive, not {value!r}")
        return number
    minutes = parse_duration_minutes(value, what=what)
    return None if minutes is None else minutes * 60


def _parse_duration_text(text: str, what: str) -> float:
    iso = _ISO.match(text.upper())
    if iso and any(iso.groups()):
        d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        return d * 1440 + h * 60 + m + s / 60
    total = 0.0
    found = False
    for low, high, unit in _PART.findall(text):
        number = (float(low) + float(high)) / 2 if high else float(low)
        if unit and unit not in _UNIT_MINUTES:
            unit = next((u for u in _UNIT_MINUTES if unit.startswith(u) and len(u) > 1), unit)
        factor = _UNIT_MINUTES.get(unit, 1.0 if not unit else None)
        if factor is None:
            raise PlanError(f"{what}: unknown unit {unit!r} in {text!r}")
        total += number * factor
        found = True
    if not found:
        raise PlanError(f"{what} is not a duration: {text!r}")
    return total
