"""The scheduler, graphlib-style: the exact ready set after each step, no event loop."""

from __future__ import annotations

import heapq
import itertools

import pytest

from orchestra_nb._scheduler import (
    CycleError,
    Failure,
    Scheduler,
    bottom_levels,
    default_priorities,
)

DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def makespan(sched: Scheduler, seconds: dict[str, float]) -> tuple[float, list[str]]:
    """Drive ``sched`` on a simulated clock; return the makespan and the start order."""
    clock, running, started = 0.0, [], []
    while sched.is_active():
        for tid in sched.get_ready():
            started.append(tid)
            heapq.heappush(running, (clock + seconds[tid], tid))
        clock, tid = heapq.heappop(running)
        sched.done(tid)
    return clock, started


# --- ready sets ------------------------------------------------------------------------


def test_diamond_ready_sets():
    s = Scheduler(DIAMOND)
    assert s.get_ready() == ["a"]
    assert s.get_ready() == []
    assert s.done("a") == ["b", "c"]
    assert s.get_ready() == ["b", "c"]
    assert s.done("c") == []
    assert s.get_ready() == []
    assert s.done("b") == ["d"]
    assert s.get_ready() == ["d"]
    assert s.is_active()
    assert s.done("d") == []
    assert not s.is_active()
    assert s.count("done") == 4


def test_chain_ready_sets():
    s = Scheduler({"t0": [], "t1": ["t0"], "t2": ["t1"], "t3": ["t2"]})
    assert [s.state(t) for t in s.order] == ["ready", "pending", "pending", "pending"]
    for k in range(3):
        assert s.get_ready() == [f"t{k}"]
        assert s.get_ready() == []
        assert s.done(f"t{k}") == [f"t{k + 1}"]
    assert s.get_ready() == ["t3"]
    assert s.done("t3") == []
    assert not s.is_active()


def test_fan_out_and_fan_in_ready_sets():
    deps = {"root": [], "w1": ["root"], "w2": ["root"], "w3": ["root"], "join": ["w1", "w2", "w3"]}
    s = Scheduler(deps)
    assert s.get_ready() == ["root"]
    assert s.done("root") == ["w1", "w2", "w3"]
    assert s.get_ready() == ["w1", "w2", "w3"]
    assert s.done("w2") == []
    assert s.done("w3") == []
    assert s.done("w1") == ["join"]
    assert s.get_ready() == ["join"]


def test_two_components_one_fails_the_other_goes_on():
    s = Scheduler({"x1": [], "x2": ["x1"], "x3": ["x2"], "y1": [], "y2": ["y1"]})
    assert s.get_ready() == ["x1", "y1"]
    assert s.failed("x1") == Failure("x1", False, 1, ("x2", "x3"))
    assert [s.state(t) for t in ("x1", "x2", "x3")] == ["failed", "skipped", "skipped"]
    assert s.get_ready() == []
    assert s.done("y1") == ["y2"]
    assert s.get_ready() == ["y2"]
    assert s.done("y2") == []
    assert not s.is_active()
    assert s.snapshot().counts["skipped"] == 2


def test_limit_hands_out_at_most_that_many():
    s = Scheduler({f"t{i}": [] for i in range(5)})
    assert s.get_ready(limit=2) == ["t0", "t1"]
    assert s.get_ready(limit=0) == []
    assert s.get_ready(limit=1) == ["t2"]
    assert s.get_ready() == ["t3", "t4"]


def test_repeated_dependencies_count_once():
    s = Scheduler({"a": [], "b": ["a", "a"]})
    s.get_ready()
    assert s.done("a") == ["b"]


def test_empty_graph():
    s = Scheduler({})
    assert s.get_ready() == []
    assert not s.is_active()
    assert s.order == ()


# --- priorities ------------------------------------------------------------------------

# three 1-second tasks listed first, then a 3-step chain of 3-second tasks
CRITICAL = {"s1": [], "s2": [], "s3": [], "s4": [], "l1": [], "l2": ["l1"], "l3": ["l2"]}
SECONDS = {"s1": 1, "s2": 1, "s3": 1, "s4": 1, "l1": 3, "l2": 3, "l3": 3}


def test_critical_path_first_shortens_the_run():
    fifo, fifo_order = makespan(Scheduler(CRITICAL, max_workers=2), SECONDS)
    assert fifo_order[:2] == ["s1", "s2"]
    assert fifo == 11
    ranked = Scheduler(CRITICAL, priority=default_priorities(CRITICAL, SECONDS), max_workers=2)
    best, order = makespan(ranked, SECONDS)
    assert order == ["l1", "s1", "s2", "s3", "l2", "s4", "l3"]
    assert best == 9  # the length of the chain: nothing better exists


def test_durations_rank_critical_path_first():
    s = Scheduler(CRITICAL, durations=SECONDS, max_workers=2)
    assert makespan(s, SECONDS) == (9, ["l1", "s1", "s2", "s3", "l2", "s4", "l3"])


def test_explicit_priority_overrides_the_critical_path():
    prio = default_priorities(CRITICAL, SECONDS, {"s4": 1, "s1": None})
    assert prio["s4"] == (1.0, 1.0) and prio["s1"] == (0.0, 1.0) and prio["l1"] == (0.0, 9.0)
    s = Scheduler(CRITICAL, priority=prio, max_workers=1)
    assert s.get_ready() == ["s4"]
    s = Scheduler(CRITICAL, priority={"s4": 1}, durations=SECONDS, max_workers=1)
    assert s.get_ready() == ["s4"]
    s.done("s4")
    assert s.get_ready() == ["l1"]


def test_higher_priority_first_ties_in_the_given_order():
    deps = {name: [] for name in "zyxw"}
    s = Scheduler(deps, priority={"z": 1.0, "y": 1.0, "x": 1.0, "w": 2.5})
    assert s.get_ready() == ["w", "z", "y", "x"]


def test_unnamed_tasks_count_zero_and_tuples_compare():
    deps = {name: [] for name in "abcd"}
    s = Scheduler(deps, priority={"c": 2, "d": -1})
    assert s.get_ready() == ["c", "a", "b", "d"]
    s = Scheduler(deps, priority={"a": (0, 1), "b": (1, 0), "d": (0, 2)})
    assert s.get_ready() == ["b", "d", "a", "c"]


def test_priority_orders_tasks_that_become_ready_together():
    deps = {"root": [], "lo": ["root"], "hi": ["root"]}
    s = Scheduler(deps, priority={"hi": 5})
    s.get_ready()
    assert s.done("root") == ["lo", "hi"]  # became ready: in the given order
    assert s.get_ready() == ["hi", "lo"]  # handed out: best first


# --- pools and workers -------------------------------------------------------------------


def test_max_workers_bounds_the_running_tasks():
    s = Scheduler({f"t{i}": [] for i in range(5)}, max_workers=2)
    assert s.get_ready() == ["t0", "t1"]
    assert s.get_ready() == []
    assert s.done("t1") == []
    assert s.get_ready() == ["t2"]
    assert s.snapshot().in_use == {"workers": 2}
    s.done("t0")
    s.done("t2")
    assert s.get_ready() == ["t3", "t4"]
    assert s.count("running") == 2


def test_pool_of_one_serializes_its_tasks_without_blocking_others():
    deps = {"g1": [], "g2": [], "g3": [], "c1": [], "c2": []}
    resources = {"g1": {"gpu": 1}, "g2": {"gpu": 1}, "g3": {"gpu": 1}}
    priority = {"g1": 5, "g2": 4, "g3": 3, "c1": 1, "c2": 0}
    s = Scheduler(deps, priority=priority, resources=resources, pools={"gpu": 1}, max_workers=4)
    assert s.get_ready() == ["g1", "c1", "c2"]  # g2 waits for the gpu; c1, c2 are not blocked
    assert s.snapshot().in_use == {"gpu": 1, "workers": 3}
    assert s.get_ready() == []
    s.done("g1")
    assert s.get_ready() == ["g2"]
    s.done("c1")
    assert s.get_ready() == []  # a free worker, but the gpu is taken
    s.done("g2")
    assert s.get_ready() == ["g3"]


def test_no_head_of_line_blocking_behind_a_full_pool():
    deps = {**{f"llm{i}": [] for i in range(4)}, "py": []}
    resources = {f"llm{i}": {"llm": 1} for i in range(4)}
    s = Scheduler(deps, resources=resources, pools={"llm": 2})
    assert s.get_ready() == ["llm0", "llm1", "py"]  # py listed last, still not stuck
    assert s.count("ready") == 2


def test_a_full_pool_does_not_hide_the_pools_after_it():
    deps = {"g1": [], "g2": [], "m1": [], "m2": [], "c1": []}
    s = Scheduler(
        deps,
        resources={"g1": {"gpu": 1}, "g2": {"gpu": 1}, "m1": {"mem": 1}, "m2": {"mem": 1}},
        pools={"gpu": 1, "mem": 1},
        priority={"g1": 5, "g2": 4, "m1": 3, "m2": 2, "c1": 1},
    )
    assert s.get_ready() == ["g1", "m1", "c1"]
    assert s.done("m1") == []
    assert s.get_ready() == ["m2"]


def test_multi_unit_and_multi_pool_resources():
    deps = {"big": [], "small1": [], "small2": [], "both": []}
    s = Scheduler(
        deps,
        resources={
            "big": {"mem": 3},
            "small1": {"mem": 1},
            "small2": {"mem": 1},
            "both": {"mem": 1, "gpu": 1},
        },
        pools={"mem": 3, "gpu": 1},
        priority={"big": 3, "both": 2, "small1": 1, "small2": 1},
    )
    assert s.get_ready() == ["big"]
    assert s.snapshot().in_use == {"mem": 3, "gpu": 0}
    assert s.done("big") == []
    assert s.get_ready() == ["both", "small1", "small2"]
    assert s.snapshot().in_use == {"mem": 3, "gpu": 1}


def test_zero_units_hold_nothing():
    s = Scheduler(
        {"a": [], "b": []}, resources={"a": {"gpu": 0}, "b": {"gpu": 1}}, pools={"gpu": 1}
    )
    assert s.get_ready() == ["a", "b"]
    assert s.snapshot().in_use == {"gpu": 1}


# --- retries -----------------------------------------------------------------------------


def test_retries_wait_requeue_and_exhaust():
    s = Scheduler({"a": [], "b": ["a"]}, retries=1)
    assert s.get_ready() == ["a"]
    assert s.failed("a") == Failure("a", True, 1, ())
    assert s.state("a") == "waiting"
    assert s.state("b") == "pending"
    assert s.get_ready() == []
    assert s.is_active()
    s.requeue("a")
    assert s.state("a") == "ready"
    assert s.get_ready() == ["a"]
    assert s.attempts("a") == 2
    assert s.failed("a") == Failure("a", False, 2, ("b",))
    assert s.state("b") == "skipped"
    assert s.attempts("b") == 0
    assert not s.is_active()


def test_a_retry_that_succeeds_releases_the_children():
    s = Scheduler({"a": [], "b": ["a"]}, retries=2)
    for attempt in (1, 2):
        assert s.get_ready() == ["a"]
        assert s.failed("a") == Failure("a", True, attempt, ())
        s.requeue("a")
    assert s.get_ready() == ["a"]
    assert s.done("a") == ["b"]
    assert s.attempts("a") == 3


def test_not_retryable_failures_fail_at_once():
    s = Scheduler({"a": [], "b": ["a"]}, retries=3)
    s.get_ready()
    assert s.failed("a", retryable=False) == Failure("a", False, 1, ("b",))


def test_per_task_retries():
    s = Scheduler({"a": [], "b": []}, retries={"a": 1})
    assert s.get_ready() == ["a", "b"]
    assert s.failed("a").retry is True
    assert s.failed("b").retry is False


def test_waiting_task_frees_its_slot():
    s = Scheduler({"a": [], "b": []}, max_workers=1, retries=1)
    assert s.get_ready() == ["a"]
    s.failed("a")
    assert s.snapshot().in_use == {"workers": 0}
    assert s.get_ready() == ["b"]
    s.requeue("a")
    assert s.get_ready() == []
    s.done("b")
    assert s.get_ready() == ["a"]


# --- cancellation ------------------------------------------------------------------------


def test_cancel_in_every_state():
    s = Scheduler(
        {"run": [], "ready": [], "wait": [], "pend": ["run"], "after": ["pend"], "last": []},
        max_workers=2,
        retries=1,
    )
    assert s.get_ready() == ["run", "ready"]
    s.failed("ready")  # waiting now
    assert s.get_ready() == ["wait"]
    # pending
    assert s.cancel("after") == ()
    assert s.state("after") == "cancelled"
    # running: its slot is freed, its pending descendants are skipped
    assert s.cancel("run") == ("pend",)
    assert s.snapshot().in_use == {"workers": 1}
    # waiting
    assert s.cancel("ready") == ()
    assert s.state("ready") == "cancelled"
    # finished: nothing happens
    assert s.cancel("run") == ()
    assert s.state("run") == "cancelled"
    # cancel_all takes the running and the ready ones
    assert s.get_ready() == ["last"]
    assert s.cancel_all() == ("wait", "last")
    assert not s.is_active()
    assert s.snapshot().in_use == {"workers": 0}
    assert s.cancel_all() == ()


def test_cancel_a_ready_task_removes_it_from_the_queue():
    s = Scheduler({"a": [], "b": [], "c": []}, max_workers=1)
    assert s.get_ready() == ["a"]  # b and c are ready
    assert s.cancel("b") == ()
    s.done("a")
    assert s.get_ready() == ["c"]
    s.done("c")
    assert s.get_ready() == []
    assert not s.is_active()


def test_cancel_all_from_the_start():
    s = Scheduler(DIAMOND)
    assert s.cancel_all() == ("a", "b", "c", "d")
    assert s.get_ready() == []
    assert s.count("cancelled") == 4


# --- completed (cached) tasks ------------------------------------------------------------


def test_completed_tasks_start_done():
    s = Scheduler(DIAMOND, completed=["a", "b"])
    assert s.state("a") == "done" and s.state("b") == "done"
    assert s.attempts("a") == 0
    assert s.get_ready() == ["c"]
    assert s.done("c") == ["d"]


def test_everything_completed_is_not_active():
    s = Scheduler(DIAMOND, completed=["d", "c", "b", "a", "a"])
    assert not s.is_active()
    assert s.get_ready() == []
    assert s.count("done") == 4


def test_completed_task_with_unfinished_ancestor_stays_done():
    s = Scheduler(DIAMOND, completed=["b"])
    assert s.get_ready() == ["a"]
    failure = s.failed("a")
    assert failure.skipped == ("c", "d")
    assert s.state("b") == "done"


def test_children_of_a_completed_task_start_even_if_its_ancestor_runs():
    s = Scheduler({"a": [], "b": ["a"], "c": ["b"]}, completed=["b"])
    assert s.get_ready() == ["a", "c"]
    assert s.done("a") == []  # b is already done: it does not become ready again
    assert s.state("b") == "done"


# --- counts and snapshot -----------------------------------------------------------------


def test_counts_and_snapshot():
    s = Scheduler(DIAMOND, retries=1, max_workers=3)
    assert s.get_ready() == ["a"]
    snap = s.snapshot()
    assert snap.counts == {
        "pending": 3,
        "held": 0,
        "ready": 0,
        "running": 1,
        "waiting": 0,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
        "skipped": 0,
    }
    assert snap.states == {"a": "running", "b": "pending", "c": "pending", "d": "pending"}
    assert snap.attempts == {"a": 1, "b": 0, "c": 0, "d": 0}
    assert snap.running == frozenset({"a"})
    assert snap.in_use == {"workers": 1}
    s.failed("a")
    assert s.count("waiting") == 1 and s.count("running") == 0
    assert snap.states["a"] == "running"  # a snapshot is a copy
    assert s.order == ("a", "b", "c", "d")


# --- bottom levels -----------------------------------------------------------------------


def test_bottom_levels():
    levels = bottom_levels(DIAMOND, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert levels == {"a": 7.0, "b": 6.0, "c": 3.0, "d": 1.0}


def test_bottom_levels_with_two_sinks_and_unknown_durations():
    deps = {"a": [], "b": ["a"], "c": ["a"], "e": ["c"], "f": []}
    levels = bottom_levels(deps, {"a": 2, "b": 10, "c": 1, "e": 4})
    assert levels == {"a": 12.0, "b": 10.0, "c": 5.0, "e": 4.0, "f": 0.0}


def test_bottom_levels_refuses_a_cycle():
    with pytest.raises(CycleError, match=r"^dependency cycle: a -> b -> a$"):
        bottom_levels({"a": ["b"], "b": ["a"]}, {})


# --- misuse ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dependencies": {"a": ["x"]}}, "task 'a' depends on unknown task 'x'"),
        (
            {"dependencies": {"a": [], "bb": "a"}},
            "dependencies of task 'bb' must be a collection of ids, not the string 'a'",
        ),
        ({"dependencies": {"a": []}, "max_workers": 0}, "max_workers must be at least 1, not 0"),
        (
            {"dependencies": {"a": []}, "pools": {"gpu": 0}},
            "pool 'gpu' must have a capacity of at least 1, not 0",
        ),
        (
            {"dependencies": {"a": []}, "pools": {"workers": 2}},
            "pool name 'workers' is reserved for max_workers",
        ),
        (
            {"dependencies": {"a": []}, "resources": {"a": {"gpu": 1}}},
            "task 'a' needs pool 'gpu', which does not exist (pools: none)",
        ),
        (
            {
                "dependencies": {"a": []},
                "resources": {"a": {"workers": 1}},
                "pools": {"mem": 2, "gpu": 1},
                "max_workers": 2,
            },
            "task 'a' needs pool 'workers', which does not exist (pools: gpu, mem)",
        ),
        (
            {"dependencies": {"a": []}, "resources": {"a": {"gpu": 2}}, "pools": {"gpu": 1}},
            "task 'a' needs 2 units of pool 'gpu' but its capacity is 1",
        ),
        (
            {"dependencies": {"a": []}, "resources": {"a": {"gpu": -1}}, "pools": {"gpu": 1}},
            "task 'a' needs -1 units of pool 'gpu'; the least is 0",
        ),
        (
            {"dependencies": {"a": []}, "resources": {"q": {}}},
            "resources names unknown task 'q'",
        ),
        ({"dependencies": {"a": []}, "priority": {"q": 1}}, "priority names unknown task 'q'"),
        ({"dependencies": {"a": []}, "retries": -1}, "retries must be at least 0, not -1"),
        ({"dependencies": {"a": []}, "retries": {"q": 1}}, "retries names unknown task 'q'"),
        (
            {"dependencies": {"a": []}, "retries": {"a": -2}},
            "retries of task 'a' must be at least 0, not -2",
        ),
        ({"dependencies": {"a": []}, "completed": ["zz"]}, "completed names unknown task 'zz'"),
        (
            {"dependencies": {"a": [], "b": []}, "priority": {"a": 1, "b": (1, 2)}},
            "priorities must be comparable with each other (numbers, or tuples of numbers of "
            "one length)",
        ),
    ],
)
def test_construction_errors(kwargs, message):
    deps = kwargs.pop("dependencies")
    with pytest.raises(ValueError) as info:
        Scheduler(deps, **kwargs)
    assert str(info.value) == message


def test_cycle_is_named():
    deps = {"d": [], "a": ["c", "d"], "b": ["a"], "c": ["b"], "e": ["c"]}
    with pytest.raises(CycleError) as info:
        Scheduler(deps)
    assert isinstance(info.value, ValueError)
    cycle = info.value.cycle
    assert cycle == ["a", "b", "c", "a"]  # starts at the cycle's task given first
    assert str(info.value) == "dependency cycle: a -> b -> c -> a"
    for before, after in itertools.pairwise(cycle):
        assert before in deps[after]  # each is a dependency of the next


def test_self_dependency_is_a_cycle():
    with pytest.raises(CycleError) as info:
        Scheduler({"a": [], "b": ["b"]})
    assert info.value.cycle == ["b", "b"]
    assert str(info.value) == "dependency cycle: b -> b"


def test_misuse_messages():
    s = Scheduler({"a": [], "b": ["a"], "c": []}, retries=1)
    with pytest.raises(ValueError, match=r"^task 'a' is not running \(it is ready\)$"):
        s.done("a")
    with pytest.raises(ValueError, match=r"^task 'b' is not running \(it is pending\)$"):
        s.failed("b")
    with pytest.raises(ValueError, match=r"^task 'a' is not waiting for a retry \(it is ready\)$"):
        s.requeue("a")
    for call in (s.state, s.attempts, s.cancel, s.done, s.requeue):
        with pytest.raises(ValueError, match=r"^unknown task 'zz'$"):
            call("zz")
    assert s.get_ready() == ["a", "c"]
    with pytest.raises(
        ValueError, match=r"^task 'a' is not waiting for a retry \(it is running\)$"
    ):
        s.requeue("a")
    s.done("a")
    with pytest.raises(ValueError, match=r"^task 'a' is not running \(it is done\)$"):
        s.done("a")
    s.cancel("c")
    with pytest.raises(ValueError, match=r"^task 'c' is not running \(it is cancelled\)$"):
        s.failed("c")
    # misuse changes nothing
    assert s.snapshot().states == {"a": "done", "b": "ready", "c": "cancelled"}


# --- gates: held tasks wait for a release -------------------------------------------------


def test_a_gated_task_is_held_when_ready_and_takes_no_slot():
    s = Scheduler({"a": [], "b": ["a"], "c": ["a"], "d": ["b"]}, max_workers=1, gated=["b"])
    assert s.get_ready() == ["a"]
    assert s.done("a") == ["c"]  # b is held, not ready
    assert s.state("b") == "held"
    assert s.take_held() == ["b"]
    assert s.take_held() == []
    assert s.get_ready() == ["c"]  # the one slot goes to c
    s.done("c")
    assert s.get_ready() == []
    assert s.is_active()  # b waits for a person: the run is not over
    s.release("b")
    assert s.state("b") == "ready"
    assert s.get_ready() == ["b"]
    assert s.done("b") == ["d"]


def test_releasing_a_gated_task_before_it_is_ready_lets_it_through():
    s = Scheduler({"a": [], "b": ["a"]}, gated=["b"])
    s.release("b")
    assert s.get_ready() == ["a"]
    assert s.done("a") == ["b"]
    assert s.take_held() == []


def test_a_held_task_can_be_cancelled_which_skips_below_it():
    s = Scheduler({"a": [], "b": [], "c": ["b"]}, gated=["b"])
    assert s.take_held() == ["b"]
    assert s.cancel("b") == ("c",)
    assert s.get_ready() == ["a"]
    s.done("a")
    assert not s.is_active()


def test_gating_a_ready_task_holds_it():
    s = Scheduler({"a": [], "b": []}, max_workers=5)
    s.gate("b")
    assert s.state("b") == "held"
    assert s.take_held() == ["b"]
    assert s.get_ready() == ["a"]


def test_defer_hands_a_task_back_without_spending_an_attempt():
    s = Scheduler({"a": [], "b": []}, max_workers=1)
    assert s.get_ready() == ["a"]
    s.defer("a")
    assert (s.state("a"), s.attempts("a")) == ("held", 0)
    assert s.take_held() == ["a"]
    assert s.get_ready() == ["b"]  # its slot is free
    s.done("b")
    s.release("a")
    assert s.get_ready() == ["a"]
    assert s.attempts("a") == 1


# --- growing the graph while it runs -----------------------------------------------------


def test_add_grows_the_graph_while_it_runs():
    s = Scheduler({}, max_workers=2)
    assert not s.is_active()
    assert s.add({"a": [], "b": ["a"]}) == (["a"], ())
    assert s.get_ready() == ["a"]
    assert s.add({"c": ["a"], "d": []}) == (["d"], ())
    assert s.get_ready() == ["d"]
    assert sorted(s.done("a")) == ["b", "c"]
    assert s.get_ready() == ["b"]  # one slot left; b was added first, so it ranks first
    assert s.add({"e": ["d", "b"]}) == ([], ())
    s.done("d")
    assert s.get_ready() == ["c"]
    s.done("b")
    assert s.get_ready() == ["e"]
    assert s.done("c") == []
    s.done("e")
    assert s.snapshot().counts["done"] == 5
    assert s.order == ("a", "b", "c", "d", "e")


def test_a_task_added_below_a_failure_is_skipped_at_once():
    s = Scheduler({"a": []})
    s.get_ready()
    s.failed("a", retryable=False)
    assert s.add({"b": ["a"], "c": ["b"], "d": []}) == (["d"], ("b", "c"))


def test_added_tasks_may_only_depend_on_known_ones():
    s = Scheduler({"a": []})
    with pytest.raises(ValueError, match="task 'b' depends on unknown task 'x'"):
        s.add({"b": ["x"]})
    with pytest.raises(ValueError, match="task 'c' depends on unknown task 'd'"):
        s.add({"c": ["d"], "d": []})  # a later task in the same batch is not known yet
    with pytest.raises(ValueError, match="task 'a' already exists"):
        s.add({"a": []})
    assert s.order == ("a",)  # a refused batch adds nothing
    assert s.add({"b": ["a"]}) == ([], ())


def test_added_tasks_respect_pools_retries_and_gates():
    s = Scheduler({"a": []}, pools={"gpu": 1}, max_workers=4)
    ready, _ = s.add(
        {"g1": [], "g2": [], "h": []},
        resources={"g1": {"gpu": 1}, "g2": {"gpu": 1}},
        retries=1,
        gated=["h"],
    )
    assert ready == ["g1", "g2"]
    assert s.take_held() == ["h"]
    assert s.get_ready() == ["a", "g1"]  # one gpu
    assert s.failed("g1").retry  # one retry
    with pytest.raises(ValueError, match="needs pool 'tpu'"):
        s.add({"x": []}, resources={"x": {"tpu": 1}})
