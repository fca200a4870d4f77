"""Content-addressed cache keys.

A task's key hashes everything that determines its result: its definition
(kind, name, description, function, params), the fingerprint of the action that
runs it (model and sampling parameters, function version, the overall goal for
LLM tasks), and the keys of its inputs paired with the dependency ids they
arrive under. Keys chain, so editing one task changes its key and the keys of
all its descendants and nothing else; an unchanged graph maps to the same keys,
so a rerun finds everything in the store and does no work.

The task's own id is left out on purpose: two identical tasks share one result
(and run once when they are in flight together).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._plan import Task, TaskGraph

KEY_VERSION = 1


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
)


def canonical_json(value: Any) -> str:
    """Stable JSON text: sorted keys, no whitespace, unknown objects by str()."""
    return _CANONICAL.encode(value)


def cache_key(
    task: Task, input_keys: Mapping[str, str], *, action: Mapping[str, Any] | None = None
) -> str:
    """The key a task's result is stored under (40 hex digits after a ``k``)."""
    return _key(task, input_keys, canonical_json(dict(action or {})))


def _key(task: Task, input_keys: Mapping[str, str], action_json: str) -> str:
    # ids are [A-Za-z0-9_.-] and keys hex: they need no JSON escaping
    inputs = ",".join(f'["{dep}","{key}"]' for dep, key in sorted(input_keys.items()))
    payload = f"[{KEY_VERSION},{task.definition_json()},{action_json},[{inputs}]]"
    return "k" + hashlib.blake2b(payload.encode(), digest_size=20).hexdigest()


def graph_keys(
    graph: TaskGraph, fingerprint: Callable[[Task], Mapping[str, Any]]
) -> dict[str, str]:
    """Keys of every task, computed in topological order (O(V+E))."""
    keys: dict[str, str] = {}
    tasks = graph.tasks
    rendered: dict[int, tuple[Mapping[str, Any], str]] = {}  # fingerprints are often shared
    for tid in graph.dependency_order():
        task = tasks[tid]
        action = fingerprint(task)
        seen = rendered.get(id(action))
        if seen is None or seen[0] is not action:
            seen = rendered[id(action)] = (action, canonical_json(dict(action)))
        keys[tid] = _key(task, {dep: keys[dep] for dep in task.dependencies}, seen[1])
    return keys


def code_version(func: Callable[..., Any]) -> str:
    """A short hash of a function's source, so editing the code invalidates its results.

    Falls back to the qualified name when the source is not available (builtins,
    C extensions). A ``__orchestra_version__`` attribute overrides both.
    """
    explicit = getattr(func, "__orchestra_version__", None)
    if explicit is not None:
        return str(explicit)
    target = _code_owner(func)
    try:
        source = inspect.getsource(target)
    except (OSError, TypeError):
        source = callable_name(func)
    return hashlib.blake2b(source.encode(), digest_size=8).hexdigest()


def callable_name(func: Callable[..., Any]) -> str:
    target = _code_owner(func)
    module = getattr(target, "__module__", None) or ""
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}" if module else name


def _code_owner(func: Any) -> Any:
    """The function (or, for callable objects, the class) whose code decides the result."""
    func = getattr(func, "__func__", func)
    if inspect.isfunction(func) or inspect.isbuiltin(func) or inspect.isclass(func):
        return func
    if isinstance(func, functools.partial):
        return _code_owner(func.func)
    return type(func)
