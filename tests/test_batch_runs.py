"""Runs whose LLM tasks go through the provider's Batch API (``llm_batch``), end to end:
the real openai client against the loopback server's batch endpoints, a real store, and a
real process killed while its batch is pending."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time

import pytest

import orchestra_nb as onb
from orchestra_nb import ConfigError, Task, TaskGraph
from orchestra_nb.llm import ScriptedLLM
from orchestra_nb.store import open_store
from tests.support import batch_child
from tests.support.cli import run_cli
from tests.support.llm_server import LLMServer, Reply, default_responder, error_body


def fast(server: LLMServer) -> onb.BatchLLM:
    """A batch client that collects for 50 ms and polls every 20 ms (the server is local)."""
    return onb.BatchLLM(
        onb.OpenAILLM("test-model", base_url=server.url, backoff=0.01),
        window=0.05,
        poll_every=0.02,
        max_poll=0.1,
    )


def fan_in(n: int = 4) -> TaskGraph:
    parts = [Task(f"p{i}", name=f"Part {i}") for i in range(n)]
    summary = Task("sum", name="Summary", dependencies=tuple(t.id for t in parts))
    return TaskGraph([*parts, summary], goal="batch test")


def kinds_of(run: onb.Run, tid: str) -> list[str]:
    return [e.kind for e in run.events if e.task_id == tid]


async def until(predicate, what: str, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_tasks_ready_together_go_in_one_batch_and_hold_no_slot(llm_server):
    run = await onb.run(fan_in(4), llm=fast(llm_server), max_workers=2, store="memory://")
    assert run.state == "finished", run.errors
    assert llm_server.requests == []  # no plain request
    first, second = llm_server.batches.values()
    assert len(first.lines) == 4  # all four parts at once, though only 2 workers
    assert [line["custom_id"] for line in second.lines] == [run.keys["sum"]]
    assert run.batches == {**{f"p{i}": first.id for i in range(4)}, "sum": second.id}
    assert kinds_of(run, "p0") == ["queued", "started", "batched", "done"]
    batched = next(e for e in run.events if e.kind == "batched" and e.task_id == "p0")
    assert batched.data == {"batch_id": first.id, "custom_id": run.keys["p0"]}
    assert run.result("sum").startswith("Answer: ## Step: Summary")
    assert run.usage.total_tokens > 0
    assert run.options.llm_batch is True


async def test_batched_results_are_cached_for_plain_runs(llm_server, tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    first = await onb.run(fan_in(2), llm=fast(llm_server), store=store)
    assert first.state == "finished"
    plain = onb.OpenAILLM("test-model", base_url=llm_server.url)
    again = await onb.run(fan_in(2), llm=plain, store=store)
    assert set(again.status.values()) == {"cached"}
    assert llm_server.requests == []
    header = (await _record(store, first.id)).header
    assert header["options"]["llm_batch"] is True
    assert header["llm"] == {"kind": "openai", "model": "test-model", "host": "127.0.0.1",
                             "batch": "yes"}  # fmt: skip


async def test_a_failed_line_fails_its_task_and_the_rest_go_on():
    def responder(request):
        if "Part 1" in request["messages"][-1]["content"]:
            return Reply(status=400, body=error_body("this part is not allowed"))
        return default_responder(request)

    with LLMServer(responder) as server:
        llm = fast(server)
        run = await onb.run(fan_in(3), llm=llm, store="memory://")
        batch_id = next(iter(server.batches))
    assert run.status == {
        "p0": "done",
        "p1": "failed",
        "p2": "done",
        "sum": "skipped",
    }
    assert run.errors["p1"] == (
        f"LLMError: the LLM server at {llm.host} answered 400 to request {run.keys['p1']} "
        f"in batch {batch_id}: this part is not allowed"
    )


async def test_an_expired_batch_fails_the_unanswered_tasks_clearly(llm_server):
    llm_server.batch_outcomes.append("expired")
    run = await onb.run(fan_in(4), llm=fast(llm_server), store="memory://")
    batch_id = next(iter(llm_server.batches))
    failed = sorted(t for t, s in run.status.items() if s == "failed")
    assert len(failed) == 2 and run.status["sum"] == "skipped"
    for tid in failed:
        assert run.errors[tid].startswith(f"LLMError: batch {batch_id} expired before request ")
        assert run.errors[tid].endswith(
            "retries or resume send it in a new batch, a run without --batch "
            "(llm_batch=False) as a plain request"
        )
    assert llm_server.requests == []  # never sent at full price behind the user's back


async def test_retries_send_what_an_expired_batch_left_in_a_new_batch(llm_server):
    llm_server.batch_outcomes.append("expired")
    run = await onb.run(fan_in(4), llm=fast(llm_server), store="memory://", retries=1, backoff=0.01)
    assert run.state == "finished", run.errors
    sizes = [len(b.lines) for b in llm_server.batches.values()]
    assert sizes == [4, 2, 1]  # the batch that expired, the two it left, the summary
    assert llm_server.requests == []


async def test_a_server_without_the_batch_api_fails_the_tasks_with_the_fallback():
    with LLMServer(batch_api=False) as server:
        llm = fast(server)
        run = await onb.run(fan_in(2), llm=llm, store="memory://", retries=3)
    host = llm.host
    message = (
        f"the LLM server at {host} has no Batch API (/v1/files: 404); run without --batch "
        "(llm_batch=False) to send plain requests"
    )
    assert run.errors == {"p0": message, "p1": message, "sum": "dependency 'p0' failed"}
    assert run.attempts["p0"] == 1  # a missing Batch API is not worth retrying
    assert server.requests == []


async def test_an_llm_that_cannot_batch_is_refused_before_the_run():
    with pytest.raises(ConfigError, match=r"needs an OpenAI-compatible LLM \(OpenAILLM\)"):
        onb.start(fan_in(1), llm=ScriptedLLM(["x"] * 3), llm_batch=True, store="memory://")


async def test_llm_batch_wraps_the_runs_openai_client(llm_server):
    llm = onb.OpenAILLM("test-model", base_url=llm_server.url)
    run = await onb.run(TaskGraph([Task("a")]), llm=llm, llm_batch=True, store="memory://")
    assert run.state == "finished", run.errors
    assert len(llm_server.batches) == 1 and llm_server.requests == []
    assert run.llm_source["batch"] == "yes"


async def test_dependents_start_as_their_own_batch_comes_back():
    """Branch a -> a2 goes on while b's batch is still held at the provider."""
    slow_started = threading.Event()

    def slow_batch(lines):
        return any("Slow branch" in str(line["body"]["messages"]) for line in lines)

    @onb.task_function
    def wait_for_a_in_a_batch() -> str:
        slow_started.wait(10)  # so that b is ready after a's batch was sent: two batches
        return "go"

    graph = TaskGraph(
        [
            Task("a", name="Fast branch"),
            Task("a2", name="After fast", dependencies=("a",)),
            Task("p", kind="python", function="wait_for_a_in_a_batch"),
            Task("b", name="Slow branch", dependencies=("p",)),
        ],
        goal="two branches",
    )

    def on_event(event):
        if event.kind == "batched" and event.task_id == "a":
            slow_started.set()

    with LLMServer() as server:
        server.batch_hold = slow_batch
        run = onb.start(graph, llm=fast(server), store="memory://", on_event=on_event)
        await until(lambda: run.status["a2"] == "done", "a2 to finish")
        assert run.status["b"] == "batched"  # its batch is still out
        server.release_batches()
        await run
    assert run.state == "finished", run.errors
    assert len(server.batches) == 3  # a, b, a2: each went as soon as it was ready
    done = [e.task_id for e in run.events if e.kind == "done"]
    assert done.index("a2") < done.index("b")


async def test_a_cancelled_run_resumes_into_the_same_batch(llm_server, tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    llm_server.batch_hold = lambda lines: True
    run = onb.start(fan_in(2), llm=fast(llm_server), store=store, run_id="cancelled")
    await until(lambda: run.status["p0"] == run.status["p1"] == "batched", "the batch")
    run.cancel()
    await run
    assert run.status["p0"] == "cancelled"
    resumed = await onb.start_resume("cancelled", llm=fast(llm_server), store=store)
    await until(lambda: resumed.status["p0"] == "batched", "the resumed run to wait")
    llm_server.release_batches()
    await resumed
    assert resumed.state == "finished", resumed.errors
    assert [len(b.lines) for b in llm_server.batches.values()] == [2, 1]  # p0+p1 sent once


async def test_resume_can_switch_to_plain_requests(llm_server, tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    llm_server.batch_hold = lambda lines: True  # a batch that does not come back
    run = onb.start(fan_in(2), llm=fast(llm_server), store=store, run_id="switch")
    await until(lambda: run.status["p0"] == "batched", "the batch")
    run.cancel()
    await run
    plain = onb.OpenAILLM("test-model", base_url=llm_server.url)
    resumed = await onb.resume("switch", llm=plain, store=store, llm_batch=False)
    assert resumed.state == "finished", resumed.errors
    assert resumed.options.llm_batch is False
    assert len(llm_server.requests) == 3 and len(llm_server.batches) == 1


async def test_a_killed_process_waiting_on_a_batch_resumes_without_resubmitting(
    llm_server, tmp_path
):
    store_url = f"sqlite:///{tmp_path}/r.db"
    llm_server.batch_hold = lambda lines: True  # the provider takes its time
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.batch_child",
        llm_server.url,
        store_url,
        "waiting",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    watcher = open_store(store_url)
    deadline = time.monotonic() + 60
    tickets: dict[str, dict] = {}
    while len(tickets) < 2:  # both first tasks recorded as waiting in the batch
        assert time.monotonic() < deadline, "the child never recorded its batch"
        assert child.returncode is None, (await child.stderr.read()).decode()
        record = await watcher.load_run("waiting")
        if record is not None:
            tickets = {
                tid: entry["batch"]
                for tid, entry in record.tasks.items()
                if entry.get("status") == "batched"
            }
        await asyncio.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    await watcher.close()
    assert len(llm_server.batches) == 1
    batch = next(iter(llm_server.batches.values()))
    assert tickets["a"]["batch_id"] == tickets["b"]["batch_id"] == batch.id

    llm = batch_child.llm(llm_server.url)
    resumed = await onb.start_resume("waiting", llm=llm, store=store_url)
    await until(lambda: resumed.status["a"] == resumed.status["b"] == "batched", "resume")
    assert resumed.batches == {"a": batch.id, "b": batch.id}
    llm_server.release_batches()
    await resumed
    assert resumed.state == "finished", resumed.errors
    first_ids = {tickets["a"]["custom_id"], tickets["b"]["custom_id"]}
    creations = [
        b for b in llm_server.batches.values() if {x["custom_id"] for x in b.lines} & first_ids
    ]
    assert creations == [batch]  # the server saw the first tasks' batch created once
    assert len(llm_server.batches) == 2  # and one more, for c
    assert llm_server.requests == []
    assert resumed.result("c").startswith("Answer: ## Step: Both halves")


async def _record(store_url: str, run_id: str):
    store = open_store(store_url)
    try:
        return await store.load_run(run_id)
    finally:
        await store.close()


def _plan_file(tmp_path) -> str:
    plan = {"subtasks": [{"id": "a", "name": "One"}, {"id": "b", "name": "Two"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return "plan.json"


def test_the_cli_runs_a_plan_through_the_batch_api(llm_server, tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    env = {"OPENAI_BASE_URL": llm_server.url}
    done = run_cli("run", _plan_file(tmp_path), "--llm", "openai:test-model", "--batch",
                   "--store", store, "--run-id", "b1", cwd=tmp_path, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "run b1: finished · 2/2 done" in done.stdout
    assert len(llm_server.batches) == 1 and llm_server.requests == []


def test_the_cli_names_the_fallback_when_the_server_has_no_batch_api(tmp_path):
    with LLMServer(batch_api=False) as server:
        env = {"OPENAI_BASE_URL": server.url}
        failed = run_cli("run", _plan_file(tmp_path), "--llm", "openai:test-model", "--batch",
                         "--store", "memory://", cwd=tmp_path, env=env)  # fmt: skip
        host = server.url.split("//")[1].split("/")[0]
    assert failed.returncode == 1
    expected = (
        f"  failed a, b: the LLM server at {host} has no Batch API (/v1/files: 404); run "
        "without --batch to send plain requests\n"
    )
    assert expected in failed.stdout
    assert "Traceback" not in failed.stderr
