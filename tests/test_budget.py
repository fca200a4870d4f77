"""Budgets: a run stops starting LLM tasks before one would cross its budget, keeps what
it finished, resumes with a larger budget without redoing anything, and asks a person
to go over when approval gates are on. Requests are counted at the loopback server."""

from __future__ import annotations

import asyncio

import pytest

import orchestra_nb as onb
from orchestra_nb._actions import llm_messages
from orchestra_nb._errors import ConfigError
from orchestra_nb._tokens import tokenizer_for
from tests.support.llm_server import Reply

ANSWER = 1000  # output tokens the server reports for every answer (and each task's max_tokens)
PROMPT = 60  # prompt tokens it reports (fewer than the prompts really hold)


def plan(n: int = 5, **extra) -> dict:
    return {
        "goal": "Test",
        **extra,
        "subtasks": [
            {"id": f"t{i}", "name": f"Part {i}", "params": {"max_tokens": ANSWER}}
            for i in range(1, n + 1)
        ],
    }


def need(i: int) -> int:
    """What the budget expects task t<i> to spend: its prompt, counted, plus max_tokens."""
    task = onb.TaskGraph.from_plan(plan()).tasks[f"t{i}"]
    messages = llm_messages(task, {}, goal="Test", names={})
    return tokenizer_for("gpt-4o-mini").count_messages(messages) + ANSWER


@pytest.fixture
def server(llm_server):
    llm_server.responder = lambda request: Reply(
        content="ok", usage={"prompt_tokens": PROMPT, "completion_tokens": ANSWER}
    )
    return llm_server


def llm(server) -> onb.OpenAILLM:
    return onb.OpenAILLM("gpt-4o-mini", base_url=server.url, api_key="k", max_tokens=2000)


def asked(server) -> list[str]:
    """The tasks the server was asked about, in order (from each prompt's step line)."""
    return [
        r["messages"][1]["content"].split("\n")[0].removeprefix("## Step: Part ")
        for r in server.requests
    ]


async def test_a_budget_stops_before_the_task_that_would_cross_it_then_resumes(server, tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    spent_per_task = PROMPT + ANSWER
    budget = 3 * spent_per_task + need(4) - 1  # room for three tasks, not a fourth
    # a plan cannot raise the budget: its own fields are not options
    hostile = plan(budget={"tokens": 10**9}, options={"budget": None})
    run = await onb.run(
        hostile, llm=llm(server), store=store, mode="pipeline", budget=onb.Budget(tokens=budget)
    )
    assert asked(server) == ["1", "2", "3"]
    assert run.status == {
        "t1": "done",
        "t2": "done",
        "t3": "done",
        "t4": "skipped",
        "t5": "skipped",
    }
    spent = 3 * spent_per_task
    assert run.error == (
        f"budget reached: spent {spent:,} of {budget:,} tokens ({budget - spent:,} left; the "
        f"next LLM task needs ≈ {need(4):,}); 2 LLM tasks not started — resume with a larger "
        "budget"
    )
    assert run.errors["t4"] == run.error
    assert run.state == "failed"
    assert run.spent.total_tokens == spent

    # resumed with the recorded budget: nothing more fits, nothing is asked
    again = await onb.resume(run.id, llm=llm(server), store=store)
    assert len(server.requests) == 3
    assert again.error is not None and again.error.startswith(f"budget reached: spent {spent:,}")

    # resumed with a larger budget: only the rest runs
    done = await onb.resume(
        run.id, llm=llm(server), store=store, budget=onb.Budget(tokens=10 * spent_per_task)
    )
    assert done.ok, done.errors
    assert asked(server) == ["1", "2", "3", "4", "5"]
    assert done.spent.total_tokens == 5 * spent_per_task
    assert {done.status[t] for t in ("t1", "t2", "t3")} == {"done"}  # from the store


async def test_a_dollar_budget_reserves_what_running_tasks_will_spend(server):
    # five tasks may run at once, but the budget holds two estimates: two start
    per_task = ((need(1) - ANSWER) * 0.15 + ANSWER * 0.60) / 1e6  # gpt-4o-mini's prices
    budget = onb.Budget(usd=2.5 * per_task)
    run = await onb.run(plan(), llm=llm(server), store="memory://", max_workers=5, budget=budget)
    assert len(server.requests) == 2
    assert sorted(s for s in run.status.values()) == [
        "done",
        "done",
        "skipped",
        "skipped",
        "skipped",
    ]
    assert run.error.startswith("budget reached: spent $")
    assert "3 LLM tasks not started — resume with a larger budget" in run.error


async def test_with_approval_gates_a_task_over_budget_waits_for_a_person(server):
    budget = onb.Budget(tokens=(PROMPT + ANSWER) + need(2) - 1)  # one task fits
    events = []
    run = onb.start(
        plan(3),
        llm=llm(server),
        store="memory://",
        mode="pipeline",
        budget=budget,
        approve=lambda task: False,  # gates on, nothing gated by itself
        on_event=events.append,
    )
    for _ in range(500):
        if run.awaiting_approval == ["t2", "t3"]:
            break
        await asyncio.sleep(0.01)
    assert run.awaiting_approval == ["t2", "t3"]
    assert len(server.requests) == 1
    reasons = [e.data.get("reason") for e in events if e.kind == "awaiting_approval"]
    assert reasons and all(r.startswith("over budget: spent 1,060 of") for r in reasons)
    assert reasons[0].endswith("— approve to go over")
    run.approve("t2")  # go over for this one
    for _ in range(500):
        if run.status["t2"] == "done":
            break
        await asyncio.sleep(0.01)
    run.reject("t3", "too costly")
    await run
    assert asked(server) == ["1", "2"]
    assert run.status == {"t1": "done", "t2": "done", "t3": "skipped"}


async def test_python_tasks_are_not_held_back_by_a_budget(server):
    def double(x: int = 2) -> int:
        return 2 * x

    graph = plan(2)
    graph["subtasks"].append({"id": "p", "kind": "python", "function": "double"})
    run = await onb.run(
        graph,
        llm=llm(server),
        store="memory://",
        mode="pipeline",
        functions={"double": double},
        budget=onb.Budget(tokens=10),
    )
    assert run.status == {"t1": "skipped", "t2": "skipped", "p": "done"}
    assert server.requests == []


def test_budget_values_are_checked():
    with pytest.raises(ConfigError, match="a Budget needs tokens"):
        onb.Budget()
    with pytest.raises(ConfigError, match="budget usd must be a positive number"):
        onb.Budget(usd=-1)
    with pytest.raises(ConfigError, match="budget tokens must be a whole number"):
        onb.Budget(tokens=1.5)
    assert onb.Budget.parse("1.50") == onb.Budget(usd=1.5)
    assert onb.Budget.parse("$2") == onb.Budget(usd=2.0)
    assert onb.Budget.parse("200k tokens") == onb.Budget(tokens=200_000)
    assert onb.Budget.parse("$1.50, 1M tokens") == onb.Budget(usd=1.5, tokens=1_000_000)
    assert str(onb.Budget(usd=1.5, tokens=200_000)) == "$1.50 and 200,000 tokens"
    for bad in ("", "cheap", "-1", "0", "$", "1.5, 2", "10 apples", "nan"):
        with pytest.raises(ConfigError, match="bad budget") as exc:
            onb.Budget.parse(bad)
        assert "\n" not in str(exc.value)


async def test_a_dollar_budget_needs_a_price_for_the_model(server):
    unpriced = onb.OpenAILLM("llama3.1", base_url=server.url, api_key="k", max_tokens=2000)
    with pytest.raises(ConfigError, match=r"needs the price of model 'llama3\.1'"):
        onb.start(plan(1), llm=unpriced, store="memory://", budget=onb.Budget(usd=1))
    run = await onb.run(plan(1), llm=unpriced, store="memory://", budget=onb.Budget(tokens=10**6))
    assert run.ok


async def test_the_budget_is_recorded_for_resume(server, tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    run = await onb.run(
        plan(1), llm=llm(server), store=store, budget=onb.Budget(usd=1, tokens=10**6)
    )
    old = await onb.rollback(run.id, store=store)
    assert old.budget == onb.Budget(usd=1, tokens=10**6)
    assert old.usage.total_tokens == PROMPT + ANSWER


async def test_an_orchestrator_applies_its_budget(server):
    async with onb.Orchestrator(
        store="memory://", llm=llm(server), budget=onb.Budget(tokens=10)
    ) as orch:
        run = await orch.run(plan(1))
        assert run.status == {"t1": "skipped"} and server.requests == []
        run = await orch.run(plan(1), budget=onb.Budget(tokens=10**6))
        assert run.ok
