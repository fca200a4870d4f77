"""Replanning: when a task fails for good, ask for a revised plan and run it instead.

With ``on_failure="replan"`` (or ``run.replan(task_id)``, the widget's Replan
button), a final failure — or a rejected approval — does not end a branch. The
driver stops starting tasks; once the running ones are done, a *replanner*
(by default an LLM call: the goal, the current plan, short summaries of what
finished, and the error) returns a revised plan. Then::

    failure ─► quiesce ─► replanner(request) ─► diff ─► [awaiting a person] ─► apply ─► continue
                                   │ error                      │ rejected
                                   └──────────► the failure stands (descendants skipped)

Applying a revision swaps the run's graph: tasks whose cache key already has a
result keep it (content keys: an unchanged finished task is not run again),
removed tasks leave the run, added and changed ones are pending, and a new
scheduler continues from there. Every revision is kept (``run.revisions``), in
the run's header too, so it survives ``resume`` and appears in reports.

Bounded: at most ``max_replans`` per run, and the same failure (same task
definition, same error) is never replanned twice, so a run cannot loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .._actions import result_text
from .._errors import OrchestraError, RunError, one_line
from .._text import shorten

if TYPE_CHECKING:
    from .._plan import TaskGraph
    from ._driver import Driver

log = logging.getLogger("orchestra_nb")

SUMMARY_CHARS = 400  # of each finished result shown to the replanner


@dataclass(frozen=True)
class RevisionRequest:
    """What a replanner is told: the goal, the plan, what finished, and what went wrong."""

    goal: str | None
    graph: TaskGraph
    finished: Mapping[str, str]  # task id -> a short summary of its result
    failed: Mapping[str, str]  # task id -> its error
    reason: str  # the failure (or rejection) that asks for the revision
    number: int  # 1 for the first revision of this run


Replanner = Callable[[RevisionRequest], Awaitable["TaskGraph"]]


@dataclass(frozen=True)
class Revision:
    """One change of a run's plan."""

    number: int
    reason: str
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    at: float = field(default_factory=time.time)
    outcome: str = "applied"  # applied | rejected (by a person) | failed (no usable plan)
    detail: str = ""  # why it was rejected or failed

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "added": list(self.added), "removed": list(self.removed),
                "changed": list(self.changed)}  # fmt: skip

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Revision:
        return cls(
            number=int(data.get("number") or 0),
            reason=str(data.get("reason") or ""),
            added=tuple(map(str, data.get("added") or ())),
            removed=tuple(map(str, data.get("removed") or ())),
            changed=tuple(map(str, data.get("changed") or ())),
            at=float(data.get("at") or 0.0),
            outcome=str(data.get("outcome") or "applied"),
            detail=str(data.get("detail") or ""),
        )


def diff(old: TaskGraph, new: TaskGraph) -> tuple[tuple[str, ...], ...]:
    """(added, removed, changed) task ids from ``old`` to ``new``, in plan order."""
    added = tuple(tid for tid in new.tasks if tid not in old.tasks)
    removed = tuple(tid for tid in old.tasks if tid not in new.tasks)
    changed = tuple(
        tid for tid, task in new.tasks.items() if tid in old.tasks and old.tasks[tid] != task
    )
    return added, removed, changed


class Replanning:
    """The revisions of one run (see the module docstring); belongs to a ``Driver``."""

    def __init__(
        self,
        driver: Driver,
        *,
        replanner: Replanner | None,
        automatic: bool,
        max_replans: int,
        past: list[Revision],
    ) -> None:
        self.driver = driver
        self.replanner = replanner
        self.automatic = automatic  # on_failure="replan": a final failure asks for a revision
        self.max_replans = max_replans
        self.revisions: list[Revision] = past
        self.pending: tuple[str, str] | None = None  # (task id, reason) waiting to replan
        self.proposed: tuple[TaskGraph, Revision] | None = None  # awaiting a person
        self._seen: set[tuple[str, str]] = set()  # failures already replanned
        self._revising = False
        self._task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        """A revision is wanted, being made, or awaiting a person: start nothing new."""
        return self.pending is not None or self.proposed is not None or self._revising

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    def wants(self, tid: str, reason: str) -> bool:
        """Whether this failure should be replanned (and if so, note it)."""
        if not self.automatic or self.replanner is None or self.pending is not None:
            return False
        applied = sum(r.outcome == "applied" for r in self.revisions)
        if applied >= self.max_replans:
            return False
        task = self.driver.graph.tasks.get(tid)
        signature = (task.definition_json() if task else tid, reason)
        if signature in self._seen:
            return False  # the revised plan failed the same way: do not loop
        self._seen.add(signature)
        self.pending = (tid, reason)
        return True

    def request(self, tid: str, reason: str) -> None:
        """Ask for a revision now (``run.replan``), whatever ``on_failure`` says."""
        if self.replanner is None:
            raise RunError("this run has no replanner: give it an llm= (or a replanner=)")
        if self.busy:
            raise RunError("a revision of this run is already under way")
        self.pending = (tid, reason)
        self.driver.dispatch()

    def maybe_start(self) -> None:
        """Called by dispatch: once nothing runs, make the revision."""
        if self.pending is None or self._running() or self.driver.running_count():
            return
        tid, reason = self.pending
        self._revising = True
        self._task = asyncio.get_running_loop().create_task(self._revise(tid, reason))

    async def _revise(self, tid: str, reason: str) -> None:
        driver = self.driver
        state = driver.state
        number = len(self.revisions) + 1
        request = RevisionRequest(
            goal=driver.graph.goal,
            graph=driver.graph.copy(),
            finished={
                t: shorten(result_text(v), SUMMARY_CHARS)
                for t, v in state.results.items()
                if state.status.get(t) in ("done", "cached")
            },
            failed={t: e for t, e in state.errors.items() if state.status.get(t) == "failed"},
            reason=f"task {tid!r}: {reason}",
            number=number,
        )
        state.emit("revision", tid, data={"stage": "requested", "number": number})
        assert self.replanner is not None
        try:
            revised = await self.replanner(request)
            driver.actions.check(revised)
        except (OrchestraError, ValueError) as exc:
            self._settle(Revision(number, request.reason, (), (), (), outcome="failed",
                                  detail=one_line(exc)))  # fmt: skip
            return
        except Exception as exc:  # a replanner's bug must not kill the run
            log.exception("the replanner of run %s failed", state.run_id)
            self._settle(Revision(number, request.reason, (), (), (), outcome="failed",
                                  detail=one_line(exc)))  # fmt: skip
            return
        added, removed, changed = diff(driver.graph, revised)
        revision = Revision(number, request.reason, added, removed, changed)
        if not (added or removed or changed):
            self._settle(replace_outcome(revision, "failed", "the revised plan is unchanged"))
            return
        if driver.approve is not None or any(t.approval for t in revised.tasks.values()):
            self.proposed = (revised, revision)  # a person accepts or rejects it
            self.pending = None
            self._revising = False
            state.emit("revision", tid, data={"stage": "proposed", **_diff_data(revision)})
            return
        await self._apply(revised, revision)

    async def accept(self) -> None:
        """Apply the proposed revision."""
        if self.proposed is None:
            raise RunError("no revision of this run is awaiting a decision")
        revised, revision = self.proposed
        self.proposed = None
        await self._apply(revised, revision)

    def reject(self, reason: str | None = None) -> None:
        """Drop the proposed revision: the failure stands."""
        if self.proposed is None:
            raise RunError("no revision of this run is awaiting a decision")
        _revised, revision = self.proposed
        self.proposed = None
        self._settle(replace_outcome(revision, "rejected", reason or "rejected"))

    async def _apply(self, revised: TaskGraph, revision: Revision) -> None:
        try:
            await self._swap(revised)
        except (OrchestraError, ValueError) as exc:
            self._settle(replace_outcome(revision, "failed", one_line(exc)))
            return
        self._settle(revision)

    async def _swap(self, revised: TaskGraph) -> None:
        """Continue with a revised plan: unchanged results are kept (by cache key), removed
        tasks leave, the rest is pending under a new scheduler. Call only when idle."""
        driver = self.driver
        assert not driver.running_count(), "a plan is swapped only while nothing runs"
        state, actions, old = driver.state, driver.actions, driver.graph
        keys = actions.cache_keys(revised)
        by_key = {state.keys[t]: v for t, v in state.results.items() if t in state.keys}
        for tid in [t for t in state.status if t not in revised.tasks]:
            state.remove_task(tid)
        for tid in revised.tasks:
            if tid not in state.status:
                state.add_task(tid)
        state.keys = keys
        for tid, key in keys.items():  # a result whose key is unchanged is kept
            if key in by_key:
                state.results[tid] = by_key[key]
            else:
                state.results.pop(tid, None)
        kept = [tid for tid in revised.tasks if tid in state.results]
        completed = kept + await driver.stored_results(
            {t: k for t, k in keys.items() if t not in state.results}
        )
        driver.use_graph(revised, forget_forced=set(old.tasks))
        driver.sched = driver.build_scheduler(revised, completed)
        done_before = {t for t in completed if state.status.get(t) in ("done", "cached")}
        for tid in revised.tasks:
            if tid in completed and tid not in done_before:
                driver.finish(tid, "cached", record=False)
            elif tid not in completed and state.status[tid] != "pending":
                state.errors.pop(tid, None)
                state.set_status(tid, "task_added", data={"task": revised.tasks[tid].to_dict()})
        driver.announce_ready(revised.tasks)

    def _settle(self, revision: Revision) -> None:
        self.revisions.append(revision)
        self.pending = None
        self._revising = False
        driver = self.driver
        driver.state.emit("revision", data={"stage": revision.outcome, **_diff_data(revision)})
        driver.save_header_soon()
        driver.dispatch()

    def close(self) -> None:
        if self._running():
            assert self._task is not None
            self._task.cancel()


def replace_outcome(revision: Revision, outcome: str, detail: str) -> Revision:
    return replace(revision, outcome=outcome, detail=detail)


def _diff_data(revision: Revision) -> dict[str, Any]:
    return {
        "number": revision.number,
        "reason": revision.reason,
        "added": list(revision.added),
        "removed": list(revision.removed),
        "changed": list(revision.changed),
        "detail": revision.detail,
    }
