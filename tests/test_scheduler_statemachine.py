"""The scheduler against a naive reference model, under random DAGs, pools and outcomes.

The model recomputes everything from scratch after each step (which tasks are
ready, what fits in the pools, what a failure skips); the scheduler must agree
with it exactly while keeping its own state incrementally.
"""

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

from orchestra_nb._scheduler import STATES, Failure, Scheduler

TERMINAL = {"done", "failed", "cancelled", "skipped"}
POOLS = ("gpu", "llm", "mem")


@st.composite
def dags(draw, max_tasks: int = 14):
    """Random DAGs: edges only from a lower index to a higher one, so never a cycle."""
    n = draw(st.integers(1, max_tasks))
    ids = [f"t{i}" for i in range(n)]
    return {
        tid: draw(st.lists(st.sampled_from(ids[:i]), unique=True, max_size=4)) if i else []
        for i, tid in enumerate(ids)
    }


@st.composite
def resource_setups(draw, ids):
    """Random pool capacities and, for some tasks, the units of each pool they hold."""
    pools = draw(st.dictionaries(st.sampled_from(POOLS), st.integers(1, 3)))
    resources = {}
    for tid in ids:
        if pools and draw(st.booleans()):
            names = draw(st.lists(st.sampled_from(sorted(pools)), min_size=1, unique=True))
            resources[tid] = {p: draw(st.integers(0, pools[p])) for p in names}
    return pools, resources


class SchedulerMachine(RuleBasedStateMachine):
    @initialize(deps=dags(), data=st.data())
    def setup(self, deps, data):
        draw = data.draw
        self.newly_held = set()
        self.deps = deps
        self.ids = list(deps)
        self.children = {t: [c for c in self.ids if t in deps[c]] for t in self.ids}
        self.pools, self.resources = draw(resource_setups(self.ids))
        self.max_workers = draw(st.none() | st.integers(1, 4))
        retries = draw(
            st.integers(0, 2) | st.dictionaries(st.sampled_from(self.ids), st.integers(0, 2))
        )
        self.retries = (
            dict.fromkeys(self.ids, retries)
            if isinstance(retries, int)
            else {t: retries.get(t, 0) for t in self.ids}
        )
        explicit = draw(st.dictionaries(st.sampled_from(self.ids), st.integers(-2, 3)))
        durations = draw(
            st.none() | st.fixed_dictionaries({t: st.integers(0, 5) for t in self.ids})
        )
        completed = draw(st.lists(st.sampled_from(self.ids), unique=True, max_size=3))
        self.gated = set(draw(st.lists(st.sampled_from(self.ids), unique=True, max_size=3)))

        self.s = Scheduler(
            deps,
            priority=explicit,
            durations=durations,
            resources=self.resources,
            pools=self.pools,
            max_workers=self.max_workers,
            retries=retries,
            completed=completed,
            gated=sorted(self.gated),
        )

        # the reference model
        position = {t: k for k, t in enumerate(self.ids)}
        if durations is None:
            key = {t: (-explicit.get(t, 0), position[t]) for t in self.ids}
        else:
            level = {}
            for t in reversed(self.ids):  # children have higher indices
                level[t] = durations[t] + max((level[c] for c in self.children[t]), default=0)
            key = {t: (-explicit.get(t, 0), -level[t], position[t]) for t in self.ids}
        self.rank = sorted(self.ids, key=key.__getitem__)
        self.state = dict.fromkeys(self.ids, "pending")
        for t in completed:
            self.state[t] = "done"
        self.attempts = dict.fromkeys(self.ids, 0)
        self.promote()
        self.check_held()
        self.steps = 0

    # --- the model -----------------------------------------------------------------------

    def need(self, tid):
        need = {p: u for p, u in self.resources.get(tid, {}).items() if u}
        if self.max_workers is not None:
            need["workers"] = 1
        return need

    def in_use(self):
        used = dict.fromkeys(self.pools, 0)
        if self.max_workers is not None:
            used["workers"] = 0
        for t in self.ids:
            if self.state[t] == "running":
                for p, u in self.need(t).items():
                    used[p] += u
        return used

    def capacity(self, pool):
        return self.max_workers if pool == "workers" else self.pools[pool]

    def promote(self):
        """Pending tasks whose dependencies are all done become ready (held when gated);
        return the ready ones in order."""
        out = [
            t
            for t in self.ids
            if self.state[t] == "pending" and all(self.state[d] == "done" for d in self.deps[t])
        ]
        for t in out:
            self.state[t] = "held" if t in self.gated else "ready"
            if t in self.gated:
                self.newly_held.add(t)
        return [t for t in out if t not in self.gated]

    def check_held(self):
        assert set(self.s.take_held()) == self.newly_held
        self.newly_held = set()

    def skip_below(self, tid):
        skipped, stack = set(), list(self.children[tid])
        while stack:
            c = stack.pop()
            if self.state[c] == "pending":
                self.state[c] = "skipped"
                skipped.add(c)
                stack.extend(self.children[c])
        return tuple(t for t in self.ids if t in skipped)

    def in_state(self, state):
        return [t for t in self.ids if self.state[t] == state]

    # --- rules ---------------------------------------------------------------------------

    @rule(limit=st.none() | st.integers(0, 3))
    def get_ready(self, limit):
        self.steps += 1
        got = self.s.get_ready(limit)
        # the model: repeatedly start the best-ranked ready task that fits
        expected, used = [], self.in_use()
        while limit is None or len(expected) < limit:
            for t in self.rank:
                need = self.need(t)
                fits = all(used[p] + u <= self.capacity(p) for p, u in need.items())
                if self.state[t] == "ready" and t not in expected and fits:
                    expected.append(t)
                    for p, u in need.items():
                        used[p] += u
                    break
            else:
                break
        assert got == expected
        for t in got:
            assert all(self.state[d] == "done" for d in self.deps[t]), f"{t} started too early"
            self.state[t] = "running"
            self.attempts[t] += 1
        # no deadlock: with nothing running or waiting, an empty hand-out means the end,
        # or that only tasks held for a release are left
        idle = not self.in_state("running") and not self.in_state("waiting")
        if idle and not got and limit != 0 and not self.in_state("held"):
            assert all(self.state[t] in TERMINAL for t in self.ids)
            assert not self.s.is_active()

    @precondition(lambda self: self.s.count("running") > 0)
    @rule(data=st.data())
    def done(self, data):
        self.steps += 1
        tid = data.draw(st.sampled_from(self.in_state("running")))
        became_ready = self.s.done(tid)
        self.state[tid] = "done"
        assert became_ready == self.promote()
        assert set(became_ready) <= set(self.children[tid])
        self.check_held()

    @precondition(lambda self: self.s.count("running") > 0)
    @rule(data=st.data(), retryable=st.booleans())
    def fail(self, data, retryable):
        self.steps += 1
        tid = data.draw(st.sampled_from(self.in_state("running")))
        outcome = self.s.failed(tid, retryable=retryable)
        attempt = self.attempts[tid]
        if retryable and attempt <= self.retries[tid]:
            self.state[tid] = "waiting"
            assert outcome == Failure(tid, True, attempt, ())
        else:
            self.state[tid] = "failed"
            assert outcome == Failure(tid, False, attempt, self.skip_below(tid))

    @precondition(lambda self: self.s.count("waiting") > 0)
    @rule(data=st.data())
    def requeue(self, data):
        self.steps += 1
        tid = data.draw(st.sampled_from(self.in_state("waiting")))
        self.s.requeue(tid)
        self.state[tid] = "held" if tid in self.gated else "ready"
        if tid in self.gated:
            self.newly_held.add(tid)
        self.check_held()

    @rule(data=st.data())
    def cancel(self, data):
        self.steps += 1
        tid = data.draw(st.sampled_from(self.ids))
        skipped = self.s.cancel(tid)
        if self.state[tid] in TERMINAL:
            assert skipped == ()
        else:
            self.state[tid] = "cancelled"
            assert skipped == self.skip_below(tid)

    @rule(data=st.data())
    def gate(self, data):
        self.steps += 1
        tid = data.draw(st.sampled_from(self.ids))
        self.s.gate(tid)
        self.gated.add(tid)
        if self.state[tid] == "ready":
            self.state[tid] = "held"
            self.newly_held.add(tid)
        self.check_held()

    @precondition(lambda self: self.gated)
    @rule(data=st.data())
    def release(self, data):
        self.steps += 1
        tid = data.draw(st.sampled_from(sorted(self.gated)))
        self.s.release(tid)
        self.gated.discard(tid)
        if self.state[tid] == "held":
            self.state[tid] = "ready"

    @precondition(lambda self: self.s.count("running") > 0)
    @rule(data=st.data())
    def defer(self, data):
        self.steps += 1
        tid = data.draw(st.sampled_from(self.in_state("running")))
        self.s.defer(tid)
        self.state[tid] = "held"
        self.attempts[tid] -= 1
        self.gated.add(tid)
        self.newly_held.add(tid)
        self.check_held()

    @precondition(lambda self: len(self.ids) < 24)
    @rule(data=st.data())
    def add(self, data):
        self.steps += 1
        draw = data.draw
        count = draw(st.integers(1, 3))
        start = len(self.ids)
        new = [f"t{start + k}" for k in range(count)]
        deps = {}
        for k, tid in enumerate(new):
            known = self.ids + new[:k]
            deps[tid] = draw(st.lists(st.sampled_from(known), unique=True, max_size=3))
        retries = draw(st.integers(0, 2))
        gated = set(draw(st.lists(st.sampled_from(new), unique=True, max_size=2)))
        ready, skipped = self.s.add(deps, retries=retries, gated=sorted(gated))
        expected_ready, expected_skipped = [], []
        for tid in new:
            self.ids.append(tid)
            self.deps[tid] = deps[tid]
            self.children[tid] = []
            for d in deps[tid]:
                self.children[d].append(tid)
            self.retries[tid] = retries
            self.attempts[tid] = 0
            self.rank.append(tid)  # after everything known, in the order added
            if tid in gated:
                self.gated.add(tid)
            parents = [self.state[d] for d in deps[tid]]
            if any(p in ("failed", "cancelled", "skipped") for p in parents):
                self.state[tid] = "skipped"
                expected_skipped.append(tid)
            elif all(p == "done" for p in parents):
                self.state[tid] = "held" if tid in gated else "ready"
                if tid in gated:
                    self.newly_held.add(tid)
                else:
                    expected_ready.append(tid)
            else:
                self.state[tid] = "pending"
        assert ready == expected_ready
        assert skipped == tuple(expected_skipped)
        self.check_held()

    @precondition(lambda self: self.steps >= 25)
    @rule()
    def cancel_all(self):
        expected = tuple(t for t in self.ids if self.state[t] not in TERMINAL)
        assert self.s.cancel_all() == expected
        for t in expected:
            self.state[t] = "cancelled"

    # --- invariants ----------------------------------------------------------------------

    @invariant()
    def states_match_the_model(self):
        snap = self.s.snapshot()
        assert snap.states == self.state
        assert all(self.s.state(t) == self.state[t] for t in self.ids)
        assert snap.running == frozenset(self.in_state("running"))
        assert self.s.is_active() == any(s not in TERMINAL for s in self.state.values())

    @invariant()
    def counts_partition_the_tasks(self):
        snap = self.s.snapshot()
        assert list(snap.counts) == list(STATES)
        assert sum(snap.counts.values()) == len(self.ids)
        for state in STATES:
            assert self.s.count(state) == snap.counts[state] == len(self.in_state(state))

    @invariant()
    def running_tasks_have_their_dependencies(self):
        for tid in self.in_state("running"):
            assert all(self.state[d] == "done" for d in self.deps[tid])

    @invariant()
    def attempts_bounded(self):
        snap = self.s.snapshot()
        assert snap.attempts == self.attempts
        for tid in self.ids:
            assert self.s.attempts(tid) <= self.retries[tid] + 1

    @invariant()
    def pools_within_capacity(self):
        in_use = self.s.snapshot().in_use
        assert in_use == self.in_use()
        for pool, used in in_use.items():
            assert 0 <= used <= self.capacity(pool)
        if self.max_workers is not None:
            assert self.s.count("running") <= self.max_workers

    @invariant()
    def skipped_only_below_a_failed_or_cancelled_task(self):
        for tid in self.in_state("skipped"):
            stack, seen = list(self.deps[tid]), set()
            while stack:
                d = stack.pop()
                if d not in seen:
                    seen.add(d)
                    stack.extend(self.deps[d])
            assert any(self.state[d] in ("failed", "cancelled") for d in seen), tid

    @invariant()
    def idle_means_finished_or_startable(self):
        if not self.in_state("running") and not self.in_state("waiting"):
            assert self.in_state("ready") or self.in_state("held") or not self.s.is_active()


SchedulerMachine.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None
)
TestSchedulerMachine = SchedulerMachine.TestCase


@settings(max_examples=150, deadline=None)
@given(dags(max_tasks=30), st.none() | st.integers(1, 5), st.data())
def test_all_successes_finish_every_task_in_topological_order(deps, workers, data):
    pools, resources = data.draw(resource_setups(list(deps)))
    s = Scheduler(deps, max_workers=workers, pools=pools, resources=resources)
    finished: list[str] = []
    running: list[str] = []
    while s.is_active():
        running.extend(s.get_ready())
        assert running, "deadlock: tasks left but none can start"
        tid = running.pop(data.draw(st.integers(0, len(running) - 1)))
        s.done(tid)
        finished.append(tid)
    assert s.get_ready() == []
    assert sorted(finished) == sorted(deps)
    assert s.count("done") == len(deps)
    position = {t: i for i, t in enumerate(finished)}
    for tid, parents in deps.items():
        for dep in parents:
            assert position[dep] < position[tid]
