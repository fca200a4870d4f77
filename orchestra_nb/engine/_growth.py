"""Plans that grow while they run: tasks added as a streaming planner writes them.

A run started with ``growing=True`` does not end when its tasks are done: more
may come. ``extend(tasks)`` adds tasks whose dependencies are already in the
plan (a task that names one not seen yet waits with the caller until it is);
each is keyed, looked up in the store (``cached`` if there), and scheduled like
any other — it may start at once (a run started with ``refresh=True`` computes
added tasks afresh too). ``seal()`` says the plan is complete; with an
error (the finished answer turned out invalid) every task not started yet is
cancelled and what finished stays in the store under its content key.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from .._cache import cache_key
from .._errors import OrchestraError
from ._gates import needs_approval

if TYPE_CHECKING:
    from .._plan import Task
    from ._driver import Driver


class Growth:
    """Adds tasks to one driver's running plan (see the module docstring)."""

    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self._unusable: str | None = None  # sealed with this error before being prepared

    async def extend(self, tasks: Iterable[Task]) -> None:
        """Add tasks to a running plan (one still being written). Each may depend on tasks
        already in it; what the store has is ``cached``, the rest runs as usual."""
        driver = self.driver
        await driver.prepared.wait()
        graph, state, sched, actions = driver.graph, driver.state, driver.sched, driver.actions
        assert sched is not None
        new = list(tasks)
        for task in new:
            graph.add_task(task)  # PlanError (unknown dependency, duplicate id): nothing added
        try:
            actions.check(graph)
        except OrchestraError:
            for task in reversed(new):
                graph.remove_task(task.id)
            raise
        keys = state.keys
        for task in new:
            inputs = {dep: keys[dep] for dep in task.dependencies}
            keys[task.id] = cache_key(task, inputs, action=actions.fingerprint(task))
            state.add_task(task.id)
            state.set_status(task.id, "task_added", data={"task": task.to_dict()})
        ids = [t.id for t in new]
        driver.refresh_added(ids)
        completed = await driver.stored_results({tid: keys[tid] for tid in ids})
        options = driver.options
        _ready, skipped = sched.add(
            {t.id: t.dependencies for t in new},
            resources={t.id: dict(t.resources) for t in new if t.resources},
            retries={t.id: options.task_retries(t) for t in new},
            gated=[t.id for t in new if needs_approval(t, driver.approve)],
            completed=completed,
        )
        for tid in completed:
            driver.finish(tid, "cached", record=False)
        for tid in skipped:
            driver.finish(tid, "skipped", error="a dependency did not finish")
        driver.announce_ready(ids)
        driver.save_header_soon()
        driver.dispatch()

    def seal(self, *, error: str | None = None) -> None:
        """The plan is complete: the run ends when its tasks do. With ``error`` the plan
        turned out unusable: tasks not started yet are cancelled (finished ones stay) —
        also when the run has not finished preparing yet (then as soon as it has)."""
        driver = self.driver
        driver.growing = False
        if error is not None:
            driver.state.error = error
            if driver.sched is None:
                self._unusable = error
            else:
                self._cancel_unstarted(error)
        driver.dispatch()

    def prepared(self) -> None:
        """The run is prepared (called before its first dispatch): a seal with an error
        that came earlier applies now, so nothing starts."""
        if self._unusable is not None:
            self._cancel_unstarted(self._unusable)

    def _cancel_unstarted(self, error: str) -> None:
        driver = self.driver
        assert driver.sched is not None
        for tid, status in list(driver.state.status.items()):
            if status in ("pending", "ready", "awaiting_approval"):
                driver.sched.cancel(tid)
                driver.finish(tid, "cancelled", error=f"not started: {error}")
