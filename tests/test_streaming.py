"""Plans that run while they stream: ``plan_and_run`` against a real streaming server.

The server streams server-sent events; ``hold_last`` keeps the answer's last
piece back until a task releases it, so "a task started before the answer
ended" is an order the server itself observed, not a timing.
"""

from __future__ import annotations

import json
import threading

import pytest

import orchestra_nb as onb
from orchestra_nb import LLMError, OpenAILLM, PlanError, TaskGraph
from orchestra_nb._decompose import CONTINUE_PROMPT
from orchestra_nb._streaming import GrowingRuns
from orchestra_nb.llm import ScriptedLLM
from tests.support.llm_server import LLMServer, Reply

GOAL = "Write a report on batteries"


def task(tid: str, *deps: str) -> dict:
    return {"id": tid, "name": tid.title(), "description": f"Do {tid}",
            "dependencies": list(deps), "estimated_time": 5}  # fmt: skip


def plan(*tasks: dict) -> str:
    return json.dumps({"subtasks": list(tasks)}, indent=1)


CHAIN = plan(task("a"), task("b", "a"), task("c", "b"))


class Worker:
    """A runner that logs each execution, with whether the server had ended its stream."""

    def __init__(self, server: LLMServer | None = None, release: dict | None = None) -> None:
        self.server = server
        self.release = release or {}  # task id -> event it sets when it runs
        self.ran: list[tuple[str, bool]] = []

    async def __call__(self, task, inputs):
        ended = bool(self.server and self.server.streams and self.server.streams[-1].ended)
        self.ran.append((task.id, ended))
        if task.id in self.release:
            self.release[task.id].set()
        return f"{task.id}<" + ",".join(sorted(inputs))

    @property
    def ids(self) -> list[str]:
        return [tid for tid, _ in self.ran]


def make(server: LLMServer, **kwargs) -> OpenAILLM:
    return OpenAILLM("m", base_url=server.url, api_key="k", backoff=0.01, **kwargs)


async def test_tasks_start_before_the_answer_ends(llm_server):
    held = threading.Event()
    llm_server.script(Reply(content=CHAIN, piece_chars=6, hold_last=held))
    worker = Worker(llm_server, release={"a": held})
    events: list[onb.Event] = []
    run = await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker, on_event=events.append)
    assert run.ok
    assert worker.ran[0] == ("a", False)  # ran while the server still held its last piece
    assert worker.ids == ["a", "b", "c"]
    assert run.results["c"] == "c<b"
    assert run.graph.tasks == TaskGraph.from_plan(CHAIN, goal=GOAL).tasks
    assert [e.task_id for e in events if e.kind == "task_added"] == ["b", "c"]
    started = [e.task_id for e in events if e.kind == "started"]
    assert started == ["a", "b", "c"]
    assert llm_server.requests[0]["stream"] is True
    assert llm_server.requests[0]["response_format"]["type"] == "json_schema"
    assert len(llm_server.requests) == 1


async def test_without_streaming_the_plan_comes_first(llm_server):
    llm_server.script(CHAIN)
    worker = Worker(llm_server)
    run = await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker, stream=False)
    assert run.ok and worker.ids == ["a", "b", "c"]
    assert "stream" not in llm_server.requests[0]
    assert run.graph == TaskGraph.from_plan(CHAIN, goal=GOAL)


@pytest.mark.parametrize("structured", [True, False])
async def test_streaming_with_and_without_a_json_schema(structured):
    with LLMServer(reject_json_schema=not structured) as server:
        held = threading.Event()
        server.script(Reply(content=CHAIN, piece_chars=5, hold_last=held))
        worker = Worker(server, release={"a": held})
        run = await onb.plan_and_run(GOAL, llm=make(server), runner=worker)
    assert run.ok and worker.ran[0] == ("a", False)
    streamed = [r for r in server.requests if r.get("stream")]
    # a server without json_schema refuses the first request: asked again in words
    assert ["response_format" in r for r in streamed] == ([True] if structured else [True, False])


async def test_a_plain_text_plan_streams(llm_server):
    text_plan = "1. search('batteries')\n2. summarize($1)\n3. write_report($1, $2)\njoin()"
    held = threading.Event()
    llm_server.script(Reply(content=text_plan, piece_chars=4, hold_last=held))
    worker = Worker(llm_server, release={"1": held})
    run = await onb.plan_and_run(GOAL, llm=make(llm_server, structured_output=False), runner=worker)
    assert run.ok
    assert worker.ran[0] == ("1", False)
    assert run.graph.tasks == TaskGraph.from_plan(text_plan, goal=GOAL).tasks
    assert run.results["3"] == "3<1,2"


async def test_tasks_only_the_finished_answer_shows_join_before_the_seal():
    runs = []
    growing = GrowingRuns(GOAL, lambda graph, growing: runs.append(
        onb.start(graph, Worker(), store="memory://", growing=growing)) or runs[-1])  # fmt: skip
    whole = TaskGraph.from_plan(CHAIN, goal=GOAL)
    await growing.tasks([whole.tasks["a"]])
    await growing.accept(whole)
    run = await runs[0]
    assert run.ok and list(run.status) == ["a", "b", "c"]
    growing = GrowingRuns(GOAL, lambda graph, growing: runs.append(
        onb.start(graph, Worker(), store="memory://", growing=growing)) or runs[-1])  # fmt: skip
    await growing.tasks([whole.tasks["a"].replace(description="something else")])
    with pytest.raises(PlanError, match=r"^the finished plan is not what ran: it changes 'a'$"):
        await growing.accept(whole)
    growing.stop("the plan cannot be used")
    assert (await runs[1]).state == "failed"


async def test_a_streamed_answer_cut_by_the_length_limit_is_continued(llm_server):
    cut = CHAIN.index('"c"')
    held = threading.Event()
    llm_server.script(
        Reply(content=CHAIN[:cut], finish_reason="length", piece_chars=6, hold_last=held),
        Reply(content=CHAIN[cut - 30 :], piece_chars=6),  # repeats the last words first
    )
    worker = Worker(llm_server, release={"a": held})
    run = await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker)
    assert run.ok and sorted(worker.ids) == ["a", "b", "c"]
    assert run.graph.tasks == TaskGraph.from_plan(CHAIN, goal=GOAL).tasks
    _, second = llm_server.requests
    assert second["stream"] is True
    assert second["messages"][-1] == {"role": "user", "content": CONTINUE_PROMPT}
    assert worker.ran[0] == ("a", False)  # a started while the first answer was streaming


async def test_an_invalid_streamed_plan_keeps_what_finished_and_is_asked_again(tmp_path):
    cyclic = plan(task("a"), task("b", "a"), task("c", "d"), task("d", "c"))
    fixed = plan(task("a"), task("b", "a"), task("c", "b"), task("d", "c"))
    held = threading.Event()
    runs: list[onb.Run] = []
    with LLMServer() as server:
        server.script(Reply(content=cyclic, piece_chars=8, hold_last=held), fixed)
        worker = Worker(server, release={"b": held})
        run = await onb.plan_and_run(
            GOAL,
            llm=make(server),
            runner=worker,
            store=f"sqlite:///{tmp_path}/r.db",
            on_run=runs.append,
        )
    assert run.ok
    assert sorted(worker.ids) == ["a", "b", "c", "d"]  # each executed once: a and b were kept
    first, second = runs
    assert second is run
    assert first.state == "failed" and "dependency cycle" in first.error
    assert first.status == {"a": "done", "b": "done"}  # c and d were never started
    assert run.status == {"a": "cached", "b": "cached", "c": "done", "d": "done"}
    reprompt = server.requests[1]["messages"]
    assert reprompt[-2] == {"role": "assistant", "content": cyclic}
    assert "dependency cycle" in reprompt[-1]["content"]


async def test_an_invalid_plan_in_memory_still_keeps_what_finished(llm_server):
    duplicate = plan(task("a"), task("b", "a"), task("a"))
    held = threading.Event()
    llm_server.script(Reply(content=duplicate, piece_chars=8, hold_last=held), CHAIN)
    worker = Worker(llm_server, release={"b": held})
    run = await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker)  # memory://
    assert run.ok and sorted(worker.ids) == ["a", "b", "c"]
    assert run.status == {"a": "cached", "b": "cached", "c": "done"}


async def test_no_usable_plan_raises_after_the_attempts_and_keeps_what_ran(llm_server):
    cyclic = plan(task("a"), task("c", "d"), task("d", "c"))
    held = threading.Event()
    llm_server.script(Reply(content=cyclic, piece_chars=8, hold_last=held), cyclic)
    worker = Worker(llm_server, release={"a": held})
    runs: list[onb.Run] = []
    with pytest.raises(PlanError, match=r"^no usable plan after 2 answer\(s\): .*cycle"):
        await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker, max_attempts=2,
                               on_run=runs.append)  # fmt: skip
    assert worker.ids == ["a"]  # the second answer's "a" came from the store
    assert [r.status for r in runs] == [{"a": "done"}, {"a": "cached"}]
    assert all(r.done and r.state == "failed" for r in runs)


async def test_an_answer_that_breaks_off_stops_the_run_and_raises(llm_server):
    llm_server.script(Reply(content=CHAIN, piece_chars=6, drop_after=len(CHAIN) // 6 - 2))
    worker = Worker(llm_server)
    runs: list[onb.Run] = []
    with pytest.raises(LLMError, match="broke off its answer"):
        await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker, on_run=runs.append)
    (run,) = runs
    assert run.done and run.state == "failed"
    assert run.error.startswith("planning stopped: the LLM server at")


async def test_a_client_that_cannot_stream_still_plans_and_runs():
    worker = Worker()
    run = await onb.plan_and_run(GOAL, llm=ScriptedLLM([CHAIN]), runner=worker)
    assert run.ok and worker.ids == ["a", "b", "c"]


async def test_a_plan_may_not_stream_in_more_tasks_than_allowed(llm_server):
    big = plan(*(task(f"t{i}") for i in range(5)))
    llm_server.script(Reply(content=big, piece_chars=20), CHAIN)
    worker = Worker(llm_server)
    run = await onb.plan_and_run(GOAL, llm=make(llm_server), runner=worker, max_tasks=3)
    assert run.ok and list(run.status) == ["a", "b", "c"]
    assert len([tid for tid in worker.ids if tid.startswith("t")]) <= 3
    assert "use at most 3" in llm_server.requests[1]["messages"][-1]["content"]
