"""Task kinds and task statuses: the words every layer describes a task in, defined once.

The parser maps a plan's ``kind`` (and its synonyms) onto ``KINDS``; actions pick
what to run by it; the renderer and the widget draw each kind and status from
these tables (the widget receives them as data, it does not repeat them).

A task's *status* in a run moves like this (the scheduler's states, plus
``cached`` for results found in the store and ``unsaved`` for a result computed
while the store was unreachable)::

    pending ─► ready ─► running ─► done
      │  │       ▲        │
      │  │       │        ├─► waiting ─► ready               (a retry after a backoff)
      │  │       │        ├─► failed ─► descendants skipped
      │  │       │        └─► unsaved                         (store down; kept in memory)
      │  └─► awaiting_approval ─► ready | skipped             (approved | rejected)
      └─► cached                                              (found in the store)
    any unfinished ─► cancelled ─► descendants skipped
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple


class Kind(NamedTuple):
    """What a task of this kind does."""

    name: str
    label: str
    description: str


KINDS: Mapping[str, Kind] = MappingProxyType(
    {
        "llm": Kind("llm", "LLM", "asks the model, with the results of its dependencies"),
        "python": Kind("python", "Python", "calls a registered Python function"),
        "report": Kind("report", "Report", "assembles its inputs into one Markdown document"),
    }
)
DEFAULT_KIND = "llm"

#: Words plans use for a kind -> the kind.
KIND_SYNONYMS: Mapping[str, str] = MappingProxyType(
    {
        **{name: name for name in KINDS},
        "prompt": "llm",
        "function": "python",
        "code": "python",
    }
)


class Status(NamedTuple):
    """A state a task can be in during a run."""

    name: str
    label: str
    final: bool  # the task will not change again in this run
    description: str


STATUSES: Mapping[str, Status] = MappingProxyType(
    {
        s.name: s
        for s in (
            Status("pending", "pending", False, "waiting for its dependencies"),
            Status(
                "awaiting_approval",
                "awaiting approval",
                False,
                "ready, but waiting for a person to approve it",
            ),
            Status("ready", "ready", False, "queued for a free worker"),
            Status("running", "running", False, "executing now"),
            Status("waiting", "retrying", False, "failed; waiting to retry after a backoff"),
            Status("done", "done", True, "computed in this run"),
            Status("cached", "cached", True, "result taken from the store; nothing ran"),
            Status("failed", "failed", True, "failed after every attempt"),
            Status("skipped", "skipped", True, "not run: a dependency failed or was cancelled"),
            Status("cancelled", "cancelled", True, "cancelled by the user or the run"),
            Status("unsaved", "unsaved", False, "computed, but the store was unreachable"),
        )
    }
)

#: Statuses after which a task will not change again in this run.
FINAL_STATUSES = frozenset(name for name, s in STATUSES.items() if s.final)
#: Statuses whose task has a result.
RESULT_STATUSES = frozenset({"done", "cached"})


def vocabulary() -> dict[str, object]:
    """Kinds and statuses as plain data, for front ends (the widget's JavaScript)."""
    return {
        "default_kind": DEFAULT_KIND,
        "kinds": [k._asdict() for k in KINDS.values()],
        "statuses": [s._asdict() for s in STATUSES.values()],
    }
