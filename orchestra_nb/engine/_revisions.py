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

With approval gates on (``approve=``, or a task of either plan says
``approval``) a revision is *proposed*: nothing starts until a person calls
``accept_revision`` or ``reject_revision`` (``approval_timeout`` rejects it for
them). A failure that comes while a revision is under way is replanned after it,
if it still stands then. ``revise(graph)`` applies a plan a person edited
(``run.edit_then_approve``) the same way, without asking a replanner; such
revisions say ``source="edit"`` and do not count towards ``max_replans``.

Bounded: at most ``max_replans`` applied replans per run, and the same failure
(same task definition, same error) is never replanned twice — not after
``resume`` either (each revision keeps a digest of the failure that asked for
it) — so a run cannot loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
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
    source: str = "replan"  # replan (a replanner's) | edit (a person edited the plan)
    failure: str = ""  # which failure asked for it (a digest), so resume does not loop

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "added": list(self.added), "removed": list(self.removed),
                "changed": list(self.changed)}  # fmt: skip

    @classmethod
    def from_record(cls, data: Mapping[str, Any]) -> Revision:
        """A revision as a run header keeps it (read from a store: every field coerced)."""
        return cls(
            number=int(data.get("number") or 0),
            reason=str(data.get("reason") or ""),
            added=tuple(map(str, data.get("added") or ())),
            removed=tuple(map(str, data.get("removed") or ())),
            changed=tuple(map(str, data.get("changed") or ())),
            at=float(data.get("at") or 0.0),
            outcome=str(data.get("outcome") or "applied"),
            detail=str(data.get("detail") or ""),
            source=str(data.get("source") or "replan"),
            failure=str(data.get("failure") or ""),
        )


def revisions_from_header(entries: Any) -> list[Revision]:
    """The revisions a run header lists; entries that are not revisions are left out (a
    shared store is untrusted)."""
    out = []
    for entry in entries if isinstance(entries, list) else ():
        if isinstance(entry, Mapping):
            with contextlib.suppress(TypeError, ValueError):
                out.append(Revision.from_record(entry))
    return out


def diff(old: TaskGraph, new: TaskGraph) -> tuple[tuple[str, ...], ...]:
    """(added, removed, changed) task ids from ``old`` to ``new``, in plan order."""
    added = tuple(tid for tid in new.tasks if tid not in old.tasks)
    removed = tuple(tid for tid in old.tasks if tid not in new.tasks)
    changed = tuple(
        tid for tid, task in new.tasks.items() if tid in old.tasks and old.tasks[tid] != task
    )
    return added, removed, changed


def failure_digest(definition: str, reason: str) -> str:
    """What identifies a failure for "never replan the same failure twice": the failed
    task's definition (not its id: a renamed copy fails the same way) and the error."""
    return hashlib.sha256(f"{definition}\n{reason}".encode()).hexdigest()[:16]


class Replanning:
    """The revisions of one run (see the module docstring); belongs to a ``Driver``.

    ``replanner`` makes revisions on request (``run.replan``); ``automatic`` (the
    run's ``on_failure="replan"``) also asks it after every final failure.
    """

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
        self.automatic = automatic and replanner is not None
        self.max_replans = max_replans
        self.revisions: list[Revision] = past
        # (task id, reason, failure digest) waiting to be replanned once nothing runs
        self.pending: tuple[str, str, str] | None = None
        self.proposed: tuple[TaskGraph, Revision] | None = None  # awaiting a person
        self.later: dict[str, tuple[str, str]] = {}  # failures while a revision was under way
        self._given: tuple[TaskGraph, str] | None = None  # an edited plan to apply as it is
        self._seen: set[str] = {r.failure for r in past if r.failure}  # failures replanned
        self._revising = False
        self._task: asyncio.Task[None] | None = None
        self._expiry: asyncio.TimerHandle | None = None

    @property
    def busy(self) -> bool:
        """A revision is wanted, being made, or awaiting a person: start nothing new."""
        return self.pending is not None or self.proposed is not None or self._revising

    def _running(self) -> bool:
        return self._task is not None and not self._task.done()

    def replans_applied(self) -> int:
        """Revisions a replanner made that the run went on with (``max_replans`` counts
        these; a person's edits do not count)."""
        return sum(r.outcome == "applied" and r.source == "replan" for r in self.revisions)

    def wants(self, tid: str, reason: str) -> bool:
        """Whether this final failure (or rejection) will be replanned; if so, note it.

        Never the same failure twice (same task definition, same error), and at most
        ``max_replans`` applied revisions. A failure while another revision is under
        way is replanned after it, if it still stands then."""
        if not self.automatic or self.replans_applied() >= self.max_replans:
            return False
        task = self.driver.graph.tasks.get(tid)
        digest = failure_digest(task.definition_json() if task else tid, reason)
        if digest in self._seen:
            return False  # the revised plan failed the same way: do not loop
        if self.busy:
            self.later[tid] = (reason, digest)
            return True
        self._seen.add(digest)
        self.pending = (tid, reason, digest)
        return True

    def request(self, tid: str, reason: str) -> None:
        """Ask for a revision now (``run.replan``), whatever ``on_failure`` says."""
        if self.replanner is None:
            raise RunError("this run has no replanner: give it an llm= (or a replanner=)")
        if tid not in self.driver.graph.tasks:
            raise RunError(f"no task {tid!r} in run {self.driver.state.run_id!r}")
        if self.busy:
            raise RunError("a revision of this run is already under way")
        self.pending = (tid, reason, "")
        self.driver.dispatch()

    def revise(self, graph: TaskGraph, reason: str, *, source: str = "edit") -> None:
        """Continue the run with ``graph`` as it is (a person's edit), once nothing runs.

        Checked now (``PlanError``/``RunError`` when a task of it cannot run); applied
        like any revision: unchanged results kept by key, the rest pending."""
        if self.busy:
            raise RunError("a revision of this run is already under way; decide on it first")
        self.driver.actions.check(graph)
        self._given = (graph, source)
        self.pending = ("", reason, "")
        self.driver.dispatch()

    def maybe_start(self) -> None:
        """Called by dispatch: once nothing runs, make the revision."""
        if self.pending is None or self._running() or self.driver.running_count():
            return
        tid, reason, digest = self.pending
        self._revising = True
        loop = asyncio.get_running_loop()
        if self._given is not None:
            (graph, source), self._given = self._given, None
            self._task = loop.create_task(self._revise_given(graph, reason, source))
        else:
            self._task = loop.create_task(self._revise(tid, reason, digest))

    def _request(self, tid: str, reason: str) -> RevisionRequest:
        """What the replanner is told now; failures noted meanwhile are part of it."""
        state = self.driver.state
        failed = {t: e for t, e in state.errors.items() if state.status.get(t) == "failed"}
        for other, (why, digest) in self.later.items():
            if other in state.status:
                failed.setdefault(other, why)
                self._seen.add(digest)
        self.later.clear()
        failed.setdefault(tid, reason)
        return RevisionRequest(
            goal=self.driver.graph.goal,
            graph=self.driver.graph.copy(),
            finished={
                t: shorten(result_text(v), SUMMARY_CHARS)
                for t, v in state.results.items()
                if state.status.get(t) in ("done", "cached")
            },
            failed=failed,
            reason=f"task {tid!r}: {reason}",
            number=len(self.revisions) + 1,
        )

    async def _revise(self, tid: str, reason: str, digest: str) -> None:
        driver = self.driver
        state = driver.state
        request = self._request(tid, reason)
        number = request.number
        state.emit("revision", tid, data={"stage": "requested", "number": number,
                                          "reason": request.reason})  # fmt: skip
        assert self.replanner is not None

        def failed(detail: str) -> Revision:
            return Revision(number, request.reason, (), (), (), outcome="failed",
                            detail=detail, failure=digest)  # fmt: skip

        try:
            revised = await self.replanner(request)
            driver.actions.check(revised)
        except (OrchestraError, ValueError) as exc:
            self._settle(failed(one_line(exc)))
            return
        except Exception as exc:  # a replanner's bug must not kill the run
            log.exception("the replanner of run %s failed", state.run_id)
            self._settle(failed(one_line(exc)))
            return
        added, removed, changed = diff(driver.graph, revised)
        revision = Revision(number, request.reason, added, removed, changed, failure=digest)
        if not (added or removed or changed):
            self._settle(replace_outcome(revision, "failed", "the revised plan is unchanged"))
            return
        if self._person_decides(revised):
            self._propose(revised, revision, tid)
            return
        await self._apply(revised, revision)

    async def _revise_given(self, graph: TaskGraph, reason: str, source: str) -> None:
        number = len(self.revisions) + 1
        self.driver.state.emit(
            "revision", data={"stage": "requested", "number": number, "reason": reason}
        )
        added, removed, changed = diff(self.driver.graph, graph)
        await self._apply(graph, Revision(number, reason, added, removed, changed, source=source))

    def _person_decides(self, revised: TaskGraph) -> bool:
        """Whether the run has approval gates (``approve=``, or a task of the plan or of
        the revision says ``approval``): then a person accepts each revision."""
        tasks = [*self.driver.graph.tasks.values(), *revised.tasks.values()]
        return self.driver.approve is not None or any(t.approval for t in tasks)

    def _propose(self, revised: TaskGraph, revision: Revision, tid: str) -> None:
        """A person accepts or rejects it (``approval_timeout`` rejects it for them)."""
        self.proposed = (revised, revision)
        self.pending = None
        self._revising = False
        timeout = self.driver.options.approval_timeout
        if timeout is not None:
            self._expiry = asyncio.get_running_loop().call_later(timeout, self._expired, revision)
        self.driver.state.emit("revision", tid, data={"stage": "proposed", **_diff_data(revision)})

    def _expired(self, revision: Revision) -> None:
        self._expiry = None
        if self.proposed is not None and self.proposed[1] is revision:
            timeout = self.driver.options.approval_timeout
            self.reject(f"approval timed out after {timeout:g} s")

    def _stop_clock(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    async def accept(self) -> None:
        """Apply the proposed revision."""
        if self.proposed is None:
            raise RunError("no revision of this run is awaiting a decision")
        revised, revision = self.proposed
        self.proposed = None
        self._stop_clock()
        self._revising = True  # nothing starts until it is applied
        await self._apply(revised, revision)

    def reject(self, reason: str | None = None) -> None:
        """Drop the proposed revision: the failure stands."""
        if self.proposed is None:
            raise RunError("no revision of this run is awaiting a decision")
        _revised, revision = self.proposed
        self.proposed = None
        self._stop_clock()
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
        found = await driver.stored_results(
            {t: k for t, k in keys.items() if k not in by_key}, into_state=False
        )  # before anything changes: a store error leaves the run as it was
        for tid in [t for t in state.status if t not in revised.tasks]:
            state.remove_task(tid)
        for tid in revised.tasks:
            if tid not in state.status:
                state.add_task(tid)
        state.keys = keys
        for tid, key in keys.items():  # a result whose key is unchanged is kept
            if key in by_key:
                state.results[tid] = by_key[key]
            elif tid in found:
                state.results[tid] = found[tid]
            else:
                state.results.pop(tid, None)
        completed = [tid for tid in revised.tasks if tid in state.results]
        driver.use_graph(revised, forget_forced=set(old.tasks))
        driver.approvals.reset()
        sched = driver.sched = driver.build_scheduler(revised, completed)
        done_before = {t for t in completed if state.status.get(t) in ("done", "cached")}
        still_rejected = set()  # a person said no to this very task: it stays skipped
        for tid, task in driver.approvals.rejected.items():
            if revised.tasks.get(tid) == task and state.status.get(tid) == "skipped":
                still_rejected.add(tid)
                for other in sched.cancel(tid):
                    still_rejected.add(other)
                    if state.status[other] != "skipped":
                        driver.finish(other, "skipped", error=f"{tid!r} was rejected")
        for tid in revised.tasks:
            if tid in still_rejected:
                continue
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
        self._next_failure()
        driver.dispatch()

    def _next_failure(self) -> None:
        """A failure that came while the last revision was under way, if it still stands."""
        status = self.driver.state.status
        while self.later and self.pending is None:
            tid = next(iter(self.later))
            reason, digest = self.later.pop(tid)
            standing = status.get(tid) in ("failed", "skipped")
            if standing and digest not in self._seen:
                if self.replans_applied() >= self.max_replans:
                    self.later.clear()
                    return
                self._seen.add(digest)
                self.pending = (tid, reason, digest)

    def close(self) -> None:
        self._stop_clock()
        if self._running():
            assert self._task is not None
            self._task.cancel()


def replace_outcome(revision: Revision, outcome: str, detail: str) -> Revision:
    return replace(revision, outcome=outcome, detail=detail)


def _diff_data(revision: Revision) -> dict[str, Any]:
    return {
        "number": revision.number,
        "source": revision.source,
        "reason": revision.reason,
        "added": list(revision.added),
        "removed": list(revision.removed),
        "changed": list(revision.changed),
        "detail": revision.detail,
    }
