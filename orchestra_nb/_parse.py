"""Tolerant reading of plans the way LLMs really write them.

``read_plan`` turns whatever a model answered (or a dict/list a user built) into a
list of normalized task entries; ``TaskGraph`` then validates the graph. Broken
JSON is mended by ``json_repair`` (a maintained library) — we only find where the
JSON is and normalize field names and values.

What is accepted: JSON in ``` fences with prose around it, trailing commas and
single quotes (via json_repair), ``subtasks``/``tasks``/``steps``/``plan`` keys, a bare
list, a mapping of id -> task, integer ids, HuggingGPT-style ``{"task", "id", "dep"}``
entries with ``-1`` meaning "no dependency", dependencies as a list, a comma
separated string, a single value or null, and durations as numbers (minutes) or
strings such as ``"15 minutes"``, ``"1h"``, ``"2h30m"``, ``"10-15 min"`` or ``"15分钟"``.

Hostile input is bounded: strict JSON of any size is read at C speed, but repair
(pure Python, about 4 s per MB of garbage) only runs on answers up to
``MAX_REPAIR_CHARS``; anything larger that is not valid JSON is refused at once.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import PlanError
from ._kinds import DEFAULT_KIND, KIND_SYNONYMS

MAX_PLAN_CHARS = 50_000_000
MAX_REPAIR_CHARS = 256_000
_PLAN_KEYS = ("subtasks", "tasks", "sub_tasks", "steps", "plan", "nodes", "items", "todo")
_ID_KEYS = ("id", "task_id", "taskId", "step_id", "step")
_NAME_KEYS = ("name", "title", "task_name", "task", "label")
_DESCRIPTION_KEYS = ("description", "desc", "details", "instruction", "instructions", "prompt")
_DEPENDENCY_KEYS = (
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
_NONE_WORDS = {"", "none", "null", "n/a", "na", "-", "[]", "nothing", "无"}
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass
class Entry:
    """One task as read from a plan, before ids are made safe and references resolved."""

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
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class RawPlan:
    entries: list[Entry]
    goal: str | None = None
    name: str | None = None


def read_plan(data: Any) -> RawPlan:
    """Normalize a plan given as text, dict or list into entries (no graph validation yet)."""
    if isinstance(data, bytes | bytearray):
        data = bytes(data).decode("utf-8", errors="replace")
    if isinstance(data, str):
        data = _decode_text(data)
    goal = name = None
    if isinstance(data, Mapping):
        goal = _optional_str(data.get("goal"))
        name = _optional_str(data.get("name")) if _find_task_list(data) is not None else None
    items = _task_items(data)
    entries = [_read_entry(i, item) for i, item in enumerate(items)]
    return RawPlan(entries, goal=goal, name=name)


# --- finding the JSON -------------------------------------------------------------


def _decode_text(text: str) -> Any:
    if len(text) > MAX_PLAN_CHARS:
        raise PlanError(
            f"the plan text is {len(text) / 1e6:.1f} MB, more than the "
            f"{MAX_PLAN_CHARS / 1e6:.0f} MB a plan may be"
        )
    stripped = text.strip()
    if not stripped:
        raise PlanError("the answer is empty: expected a JSON plan")
    candidates = [body for _lang, body in _FENCE.findall(stripped)] + [stripped]
    for candidate in candidates:
        value = _strict_decode(candidate)
        if value is not _NOTHING and _looks_like_plan(value):
            return value
    if not any(c in stripped for c in "{["):
        raise PlanError(f"the answer contains no JSON plan: {_preview(stripped)}")
    return _repair(candidates)


_NOTHING = object()


def _strict_decode(text: str) -> Any:
    """json.loads, else one JSON value starting at the first bracket (prose around it)."""
    text = text.strip()
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass
    start = _first_bracket(text)
    if start < 0:
        return _NOTHING
    try:
        value, _end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return _NOTHING
    return value


def _repair(candidates: list[str]) -> Any:
    import json_repair

    for candidate in candidates:
        start = _first_bracket(candidate)
        if start < 0:
            continue
        size = len(candidate) - start
        if size > MAX_REPAIR_CHARS:
            raise PlanError(
                f"the answer is not valid JSON and too large to repair ({size / 1e6:.1f} MB > "
                f"{MAX_REPAIR_CHARS / 1e6:.2f} MB): {_preview(candidate[start : start + 1000])}"
            )
        chunk = candidate[start:]
        for text in (chunk, candidate) if start else (chunk,):
            try:
                value = json_repair.loads(text)
            except (ValueError, RecursionError):
                continue
            if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
                # several JSON documents in one answer: the first that holds a plan wins
                for doc in value:
                    if _find_task_list(doc) is not None:
                        return doc
            if (isinstance(value, Mapping) and value) or (
                isinstance(value, list) and any(isinstance(v, Mapping) for v in value)
            ):
                return value
    raise PlanError(f"the answer contains no JSON plan: {_preview(candidates[-1])}")


def _first_bracket(text: str) -> int:
    positions = [p for p in (text.find("{"), text.find("[")) if p >= 0]
    return min(positions) if positions else -1


def _looks_like_plan(value: Any) -> bool:
    if isinstance(value, list):
        return True
    return isinstance(value, Mapping) and bool(value)


def _preview(text: str, limit: int = 80) -> str:
    one_line = " ".join(text[: limit * 8].split())  # a bounded head: the text may be huge
    return repr(one_line if len(one_line) <= limit else one_line[: limit - 1] + "…")


# --- finding the task list ----------------------------------------------------------


def _find_task_list(data: Mapping[str, Any]) -> list[Any] | None:
    for key in _PLAN_KEYS:
        value = data.get(key)
        if isinstance(value, list):
            return value
        if isinstance(value, Mapping):
            inner = _find_task_list(value)
            if inner is not None:
                return inner
            if value and all(isinstance(v, Mapping) for v in value.values()):
                return _mapping_to_list(value)
    return None


def _mapping_to_list(mapping: Mapping[str, Any]) -> list[Any]:
    out = []
    for key, value in mapping.items():
        item = dict(value)
        if not any(k in item for k in _ID_KEYS):
            item["id"] = key
        out.append(item)
    return out


def _task_items(data: Any) -> list[Any]:
    if isinstance(data, list):
        items = data
    elif isinstance(data, Mapping):
        found = _find_task_list(data)
        if found is not None:
            items = found
        elif any(k in data for k in _DESCRIPTION_KEYS + _NAME_KEYS) and not all(
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
    return items


# --- one entry ------------------------------------------------------------------------


def _read_entry(index: int, item: Any) -> Entry:
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

    raw_id = pick(_ID_KEYS)
    hugging_task = item.get("task") if "dep" in item or "args" in item else None
    name = pick(_NAME_KEYS)
    description = pick(_DESCRIPTION_KEYS)
    if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
        raw_id = f"task_{index + 1}"
    raw_id = _id_text(raw_id)
    if isinstance(name, Mapping | list):
        name = json.dumps(name, ensure_ascii=False)
    name = _optional_str(name) or raw_id
    args = item.get("args")
    if description is None and hugging_task is not None and isinstance(args, Mapping):
        description = "; ".join(f"{k}: {v}" for k, v in args.items())
    if isinstance(description, Mapping | list):
        description = json.dumps(description, ensure_ascii=False)
    deps = _dependency_refs(pick(_DEPENDENCY_KEYS))
    estimated = parse_duration_minutes(pick(_TIME_KEYS), what=f"task {raw_id!r}: estimated_time")
    kind = _kind(item, used)
    function = _optional_str(pick(("function", "func", "callable")))
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
        description=_optional_str(description) or "",
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
    )
    entry.extra = {str(k): v for k, v in item.items() if k not in used}
    return entry


def _id_text(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _optional_str(value: Any) -> str | None:
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


def _dependency_refs(value: Any) -> list[str]:
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
                parts.append(next((v[k] for k in _ID_KEYS if k in v), v.get("name")))
            else:
                parts.append(v)
    else:
        parts = [value]
    refs: list[str] = []
    for part in parts:
        if part is None or part == -1 or part == "-1":
            continue
        text = _id_text(part)
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
