"""The scheduler, graphlib-style: the exact ready set after each step."""

from __future__ import annotations

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


def test_diamond_ready_sets():
    s = Scheduler(DIAMOND)
    assert s.get_ready() == ["a"]
    assert s.get_ready() == []
    assert s.done("a") == ["b", "c"]
    assert s.get_ready() == ["b", "c"]
    assert s.done("c") == []
    assert s.done("b") == ["d"]
    assert s.get_ready() == ["d"]
    assert s.is_active()
    assert s.done("d") == []
    assert not s.is_active()
    assert s.count("done") == 4


def test_chain_and_two_components():
    s = Scheduler({"x1": [], "x2": ["x1"], "y1": [], "y2": ["y1"]})
    assert s.get_ready() == ["x1", "y1"]
    assert s.done("y1") == ["y2"]
    assert s.get_ready() == ["y2"]
    assert s.done("x1") == ["x2"]
    assert s.get_ready(limit=1) == ["x2"]


def test_fan_out_with_max_workers():
    s = Scheduler({f"t{i}": [] for i in range(5)}, max_workers=2)
    assert s.get_ready() == ["t0", "t1"]
    assert s.get_ready() == []
    s.done("t1")
    assert s.get_ready() == ["t2"]
    assert s.snapshot().in_use == {"workers": 2}


def test_critical_path_first_and_explicit_priority_overrides():
    deps = {"short": [], "long1": [], "long2": ["long1"], "mid": []}
    durations = {"short": 1, "long1": 5, "long2": 5, "mid": 3}
    s = Scheduler(deps, priority=default_priorities(deps, durations), max_workers=1)
    assert s.get_ready() == ["long1"]
    s.done("long1")
    assert s.get_ready() == ["long2"]
    s = Scheduler(deps, priority=default_priorities(deps, durations, {"short": 1}), max_workers=1)
    assert s.get_ready() == ["short"]


def test_equal_priorities_keep_the_given_order():
    deps = {name: [] for name in "zyx"}
    s = Scheduler(deps, priority=dict.fromkeys("zyx", 1.0))
    assert s.get_ready() == ["z", "y", "x"]


def test_pool_of_one_serializes_its_tasks_without_blocking_others():
    deps = {"g1": [], "g2": [], "g3": [], "c1": [], "c2": []}
    resources = {"g1": {"gpu": 1}, "g2": {"gpu": 1}, "g3": {"gpu": 1}}
    priority = {"g1": 5, "g2": 4, "g3": 3, "c1": 1, "c2": 0}
    s = Scheduler(deps, priority=priority, resources=resources, pools={"gpu": 1}, max_workers=4)
    assert s.get_ready() == ["g1", "c1", "c2"]  # g2 waits for the gpu; c1, c2 are not blocked
    assert s.snapshot().in_use == {"gpu": 1, "workers": 3}
    s.done("g1")
    assert s.get_ready() == ["g2"]


def test_multi_unit_resources():
    deps = {"big": [], "small1": [], "small2": []}
    s = Scheduler(
        deps,
        resources={"big": {"mem": 3}, "small1": {"mem": 1}, "small2": {"mem": 1}},
        pools={"mem": 3},
        priority={"big": 2, "small1": 1, "small2": 1},
    )
    assert s.get_ready() == ["big"]
    s.done("big")
    assert s.get_ready() == ["small1", "small2"]


def test_retries_wait_requeue_and_exhaust():
    s = Scheduler({"a": [], "b": ["a"]}, retries=1)
    assert s.get_ready() == ["a"]
    assert s.failed("a") == Failure("a", True, 1, ())
    assert s.state("a") == "waiting"
    assert s.get_ready() == []
    s.requeue("a")
    assert s.get_ready() == ["a"]
    assert s.attempts("a") == 2
    assert s.failed("a") == Failure("a", False, 2, ("b",))
    assert s.state("b") == "skipped"
    assert not s.is_active()


def test_not_retryable_failures_fail_at_once():
    s = Scheduler({"a": []}, retries=3)
    s.get_ready()
    assert s.failed("a", retryable=False).retry is False


def test_per_task_retries():
    s = Scheduler({"a": [], "b": []}, retries={"a": 1})
    s.get_ready()
    assert s.failed("a").retry is True
    assert s.failed("b").retry is False


def test_waiting_task_frees_its_slot():
    s = Scheduler({"a": [], "b": []}, max_workers=1, retries=1)
    assert s.get_ready() == ["a"]
    s.failed("a")
    assert s.get_ready() == ["b"]


def test_cancel_in_every_state():
    s = Scheduler(
        {"run": [], "ready": [], "wait": [], "pend": ["run"], "after": ["pend"]},
        max_workers=2,
        retries=1,
    )
    assert s.get_ready() == ["run", "ready"]
    s.failed("ready")  # now waiting
    assert s.get_ready() == ["wait"]
    assert s.cancel("run") == ("pend", "after")
    assert s.snapshot().in_use == {"workers": 1}
    assert s.cancel("ready") == ()
    assert s.state("ready") == "cancelled"
    assert s.cancel("run") == ()  # already finished: nothing happens
    assert s.cancel_all() == ("wait",)
    assert not s.is_active()
    assert s.snapshot().in_use == {"workers": 0}


def test_cancel_a_ready_task_removes_it_from_the_queue():
    s = Scheduler({"a": [], "b": []}, max_workers=1)
    s.get_ready()  # a running, b ready
    s.cancel("b")
    s.done("a")
    assert s.get_ready() == []
    assert not s.is_active()


def test_completed_tasks_start_done():
    s = Scheduler(DIAMOND, completed=["a", "b"])
    assert s.state("a") == "done" and s.state("b") == "done"
    assert s.get_ready() == ["c"]
    assert s.done("c") == ["d"]


def test_completed_task_with_unfinished_ancestor_stays_done():
    s = Scheduler(DIAMOND, completed=["b"])
    assert s.get_ready() == ["a"]
    failure = s.failed("a")
    assert failure.skipped == ("c", "d")
    assert s.state("b") == "done"


def test_counts_and_snapshot():
    s = Scheduler(DIAMOND, retries=1)
    s.get_ready()
    snap = s.snapshot()
    assert snap.counts == {
        "pending": 3,
        "ready": 0,
        "running": 1,
        "waiting": 0,
        "done": 0,
        "failed": 0,
        "cancelled": 0,
        "skipped": 0,
    }
    assert snap.running == frozenset({"a"})
    assert snap.attempts["a"] == 1
    assert snap.states["d"] == "pending"
    assert s.order == ("a", "b", "c", "d")


def test_bottom_levels():
    levels = bottom_levels(DIAMOND, {"a": 1, "b": 5, "c": 2, "d": 1})
    assert levels == {"a": 7.0, "b": 6.0, "c": 3.0, "d": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dependencies": {"a": ["x"]}}, "task 'a' depends on unknown task 'x'"),
        ({"dependencies": {"a": []}, "max_workers": 0}, "max_workers must be at least 1, not 0"),
        (
            {"dependencies": {"a": []}, "resources": {"a": {"gpu": 1}}},
            "task 'a' needs pool 'gpu', which does not exist (pools: none)",
        ),
        (
            {"dependencies": {"a": []}, "resources": {"a": {"gpu": 2}}, "pools": {"gpu": 1}},
            "task 'a' needs 2 units of pool 'gpu' but its capacity is 1",
        ),
        ({"dependencies": {"a": []}, "completed": ["zz"]}, "completed names unknown task 'zz'"),
    ],
)
def test_construction_errors(kwargs, message):
    deps = kwargs.pop("dependencies")
    with pytest.raises(ValueError) as info:
        Scheduler(deps, **kwargs)
    assert str(info.value) == message


def test_cycle_is_named():
    with pytest.raises(CycleError) as info:
        Scheduler({"a": ["c"], "b": ["a"], "c": ["b"], "d": []})
    cycle = info.value.cycle
    assert cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert str(info.value) == "dependency cycle: " + " -> ".join(cycle)
    # each is a dependency of the next
    deps = {"a": ["c"], "b": ["a"], "c": ["b"]}
    for before, after in itertools.pairwise(cycle):
        assert before in deps[after]


def test_misuse_messages():
    s = Scheduler({"a": [], "b": ["a"]}, retries=1)
    with pytest.raises(ValueError, match=r"^task 'a' is not running \(it is ready\)$"):
        s.done("a")
    with pytest.raises(ValueError, match=r"^task 'b' is not running \(it is pending\)$"):
        s.failed("b")
    with pytest.raises(ValueError, match=r"^task 'a' is not waiting for a retry \(it is ready\)$"):
        s.requeue("a")
    with pytest.raises(ValueError, match=r"^unknown task 'zz'$"):
        s.state("zz")
    s.get_ready()
    s.done("a")
    with pytest.raises(ValueError, match=r"is not running \(it is done\)"):
        s.done("a")
