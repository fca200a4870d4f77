"""The scheduler under random DAGs, pools, failures, retries and cancellations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from orchestra_nb._scheduler import STATES, Scheduler


@st.composite
def dags(draw, max_tasks: int = 14):
    n = draw(st.integers(1, max_tasks))
    ids = [f"t{i}" for i in range(n)]
    deps = {
        tid: draw(st.lists(st.sampled_from(ids[:i]), unique=True)) if i else []
        for i, tid in enumerate(ids)
    }
    return deps


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(
        deps=dags(),
        max_workers=st.none() | st.integers(1, 4),
        retries=st.integers(0, 2),
        data=st.data(),
    )
    def setup(self, deps, max_workers, retries, data):
        self.deps = deps
        self.ids = list(deps)
        self.pools = data.draw(st.dictionaries(st.sampled_from(["p", "q"]), st.integers(1, 3)))
        self.resources = {}
        for tid in self.ids:
            if self.pools and data.draw(st.booleans()):
                pool = data.draw(st.sampled_from(sorted(self.pools)))
                self.resources[tid] = {pool: data.draw(st.integers(1, self.pools[pool]))}
        self.max_workers = max_workers
        self.retries = retries
        self.s = Scheduler(
            deps,
            resources=self.resources,
            pools=self.pools,
            max_workers=max_workers,
            retries=retries,
            priority={tid: data.draw(st.integers(0, 3)) for tid in self.ids},
        )
        self.started: list[str] = []
        self.stopped: set[str] = set()  # failed or cancelled on purpose

    def _in(self, state):
        return [t for t in self.ids if self.s.state(t) == state]

    @rule()
    def get_ready(self):
        for tid in self.s.get_ready():
            for dep in self.deps[tid]:
                assert self.s.state(dep) == "done", f"{tid} started before {dep} was done"
            self.started.append(tid)

    @precondition(lambda self: self.s.count("running") > 0)
    @rule(data=st.data())
    def done(self, data):
        self.s.done(data.draw(st.sampled_from(self._in("running"))))

    @precondition(lambda self: self.s.count("running") > 0)
    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data, retryable):
        tid = data.draw(st.sampled_from(self._in("running")))
        outcome = self.s.failed(tid, retryable=retryable)
        if not outcome.retry:
            self.stopped.add(tid)

    @precondition(lambda self: self.s.count("waiting") > 0)
    @rule(data=st.data())
    def requeue(self, data):
        self.s.requeue(data.draw(st.sampled_from(self._in("waiting"))))

    @rule(data=st.data())
    def cancel(self, data):
        tid = data.draw(st.sampled_from(self.ids))
        if self.s.state(tid) not in ("done", "failed", "cancelled", "skipped"):
            self.stopped.add(tid)
        self.s.cancel(tid)

    @invariant()
    def bounds_hold(self):
        snap = self.s.snapshot()
        running = [t for t in self.ids if snap.states[t] == "running"]
        if self.max_workers is not None:
            assert len(running) <= self.max_workers
            assert snap.in_use["workers"] == len(running)
        for pool, capacity in self.pools.items():
            used = sum(self.resources.get(t, {}).get(pool, 0) for t in running)
            assert used == snap.in_use[pool] <= capacity

    @invariant()
    def attempts_bounded(self):
        for tid in self.ids:
            assert self.s.attempts(tid) <= self.retries + 1

    @invariant()
    def running_tasks_have_their_dependencies(self):
        for tid in self._in("running"):
            assert all(self.s.state(d) == "done" for d in self.deps[tid])

    @invariant()
    def counts_partition_the_tasks(self):
        snap = self.s.snapshot()
        assert sum(snap.counts.values()) == len(self.ids)
        for state in STATES:
            assert snap.counts[state] == sum(1 for t in self.ids if snap.states[t] == state)

    @invariant()
    def skipped_only_below_a_stopped_task(self):
        for tid in self._in("skipped"):
            stack, seen, found = list(self.deps[tid]), set(), False
            while stack:
                d = stack.pop()
                if d in seen:
                    continue
                seen.add(d)
                if d in self.stopped:
                    found = True
                    break
                stack.extend(self.deps[d])
            assert found, f"{tid} skipped without a failed or cancelled ancestor"

    @invariant()
    def no_deadlock(self):
        # with nothing running or waiting, either something can start or everything is over
        idle = self.s.count("running") == 0 and self.s.count("waiting") == 0
        if idle and self.s.count("ready") == 0:
            assert not self.s.is_active(), "pending tasks but nothing can ever run"


SchedulerMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None
)
TestScheduler = SchedulerMachine.TestCase


@settings(max_examples=150, deadline=None)
@given(dags(max_tasks=25), st.integers(1, 5), st.randoms(use_true_random=False))
def test_all_successes_finish_in_topological_order(deps, workers, rng):
    s = Scheduler(deps, max_workers=workers)
    finished: list[str] = []
    running: list[str] = []
    while s.is_active():
        running.extend(s.get_ready())
        assert running, "deadlock: active but nothing runs"
        tid = running.pop(rng.randrange(len(running)))
        s.done(tid)
        finished.append(tid)
    assert sorted(finished) == sorted(deps)
    position = {t: i for i, t in enumerate(finished)}
    for tid, parents in deps.items():
        for dep in parents:
            assert position[dep] < position[tid]
