"""The magics through IPython's own test shell, with a real LLM client on loopback."""

from __future__ import annotations

import json

import pytest
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

import orchestra_nb as onb
from orchestra_nb import TaskGraph
from tests.support.llm_server import LLMServer, Reply

PLAN = {
    "subtasks": [
        {
            "id": "task_1",
            "name": "Research",
            "description": "Find figures",
            "dependencies": [],
            "estimated_time": 5,
        },
        {
            "id": "task_2",
            "name": "Compare",
            "description": "Compare makers",
            "dependencies": [],
            "estimated_time": 5,
        },
        {
            "id": "task_3",
            "name": "Write",
            "description": "Write the summary",
            "dependencies": ["task_1", "task_2"],
            "estimated_time": 10,
        },
    ]
}


def responder(request):
    if "response_format" in request:  # the planning call asks for structured output
        goal = request["messages"][-1]["content"]
        return Reply(content=json.dumps({**PLAN, "note": goal}))
    step = request["messages"][-1]["content"].split("\n")[0]
    return Reply(content=f"Result for {step}")


@pytest.fixture(scope="module")
def shell():
    ip = start_ipython() or get_ipython()  # started once per process
    ip.run_line_magic("load_ext", "orchestra_nb")
    return ip


@pytest.fixture
def ip(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with LLMServer(responder) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-magic-test")
        shell.server = server
        yield shell
    for name in [n for n in shell.user_ns if n.startswith("t_")]:
        del shell.user_ns[name]
    magics = next(c for c in shell.configurables if type(c).__name__ == "Orchestra")
    magics.model = magics.llm = magics.store = magics.budget = ""
    magics.max_workers = 5
    magics.orchestrations.clear()


def cell(ip, source):
    result = ip.run_cell(source)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    if result.error_before_exec is not None:
        raise result.error_before_exec
    return result.result


def usage_error(ip, source) -> str:
    result = ip.run_cell(source)
    error = result.error_in_exec or result.error_before_exec
    assert isinstance(error, UsageError), f"expected a UsageError, got {error!r}"
    assert "\n" not in str(error)
    return str(error)


def test_help_lists_the_flags(ip, capsys):
    ip.run_cell("%%orchestrate?")
    out = capsys.readouterr().out
    for flag in (
        "--name",
        "--run",
        "--wait",
        "--max-workers",
        "--mode",
        "--model",
        "--llm",
        "--store",
        "--from",
        "--no-cache",
        "--budget",
    ):
        assert flag in out


def test_plan_run_and_wait_binds_the_name(ip):
    cell(
        ip,
        "%%orchestrate --name t_report --run --wait --store memory://\nWrite a report on batteries",
    )
    report = ip.user_ns["t_report"]
    assert isinstance(report, onb.jupyter._session.Orchestration)
    assert list(report.graph.tasks) == ["task_1", "task_2", "task_3"]
    assert report.graph.goal == "Write a report on batteries"
    assert report.run.ok
    assert report.results["task_3"].startswith("Result for ## Step: Write")
    assert report.report == report.results["task_3"]
    planning = ip.server.requests[0]
    assert planning["response_format"]["type"] == "json_schema"
    assert planning["messages"][-1]["content"] == "Write a report on batteries"


def test_variables_are_filled_from_the_notebook(ip):
    ip.user_ns["t_topic"] = "solid-state batteries"
    cell(
        ip, "%%orchestrate --name t_r --wait --store memory://\nA report on {t_topic} {{not a var}}"
    )
    assert ip.user_ns["t_r"].goal == "A report on solid-state batteries {not a var}"
    # --wait waits for the drawing too: a notebook saved now holds the positions
    assert ip.user_ns["t_r"].widget.layout["state"] == "ready"
    message = usage_error(ip, "%%orchestrate --name t_r\nA report on {t_missing}")
    assert message == "the cell uses {t_missing} but no variable 't_missing' exists"


def test_without_wait_the_cell_returns_at_once_and_await_waits(ip):
    ip.server.latency = 0.2
    cell(ip, "%%orchestrate --name t_bg --run --store memory://\nWrite a report")
    bg = ip.user_ns["t_bg"]
    assert bg.planning  # still planning when the cell has returned
    cell(ip, "t_final = await t_bg")
    assert ip.user_ns["t_final"].ok
    assert set(bg.status.values()) == {"done"}


def test_run_streams_the_plan_into_the_run_and_the_widget(ip, tmp_path, monkeypatch):
    import threading

    from orchestra_nb.jupyter._widget import DagWidget

    held = threading.Event()
    plan_ended_at_first_task: list[bool] = []
    shown: list[int] = []  # the size of each plan the widget was given
    set_graph = DagWidget.set_graph

    def recording(widget, graph):
        shown.append(len(graph))
        set_graph(widget, graph)

    def tasks(request):
        if not plan_ended_at_first_task:
            plan_ended_at_first_task.append(ip.server.streams[0].ended)
        held.set()  # the plan's last piece may go now
        return responder(request)

    monkeypatch.setattr(DagWidget, "set_graph", recording)
    ip.server.responder = tasks
    ip.server.script(Reply(content=json.dumps(PLAN, indent=1), piece_chars=8, hold_last=held))
    flags = f"--name t_s --run --wait --no-cache --store sqlite:///{tmp_path}/s.db"
    cell(ip, f"%%orchestrate {flags}\nWrite a report")
    orchestration = ip.user_ns["t_s"]
    assert orchestration.run.ok
    assert plan_ended_at_first_task == [False]  # a task ran before the plan had ended
    assert ip.server.requests[0]["stream"] is True
    assert ip.server.requests[0]["response_format"]["type"] == "json_schema"
    assert shown[0] == 1 and shown[-1] == 3 and shown == sorted(shown)  # it grew in the widget
    assert list(orchestration.graph.tasks) == ["task_1", "task_2", "task_3"]
    assert orchestration.graph is not orchestration.run.graph  # widget edits stay out of it
    assert orchestration.widget.graph is orchestration.graph
    assert [t["id"] for t in orchestration.widget.tasks] == ["task_1", "task_2", "task_3"]


def test_no_stream_plans_first(ip, tmp_path):
    store = f"sqlite:///{tmp_path}/ns.db"
    cell(ip, f"%%orchestrate --name t_ns --run --no-stream --wait --store {store}\nWrite a report")
    assert ip.user_ns["t_ns"].run.ok
    assert "stream" not in ip.server.requests[0]
    again = f"--name t_ns2 --run --no-stream --no-cache --wait --store {store}"
    cell(ip, f"%%orchestrate {again}\nWrite a report")
    assert set(ip.user_ns["t_ns2"].status.values()) == {"done"}  # recomputed, not cached


@pytest.mark.parametrize("kind", ["graph", "dict", "json"])
def test_from_a_variable(ip, kind):
    value = {"graph": TaskGraph.from_plan(PLAN), "dict": PLAN, "json": json.dumps(PLAN)}[kind]
    ip.user_ns["t_plan"] = value
    cell(ip, "%orchestrate --from t_plan --name t_from --run --wait --store memory://")
    run = ip.user_ns["t_from"].run
    assert run.ok
    assert all(not r.get("response_format") for r in ip.server.requests)  # no planning call


def test_flags_reach_the_run(ip, tmp_path):
    ip.user_ns["t_plan"] = PLAN
    store = f"sqlite:///{tmp_path}/m.db"
    flags = f"--run --wait --max-workers 1 --mode pipeline --store {store}"
    cell(ip, f"%orchestrate --from t_plan --name t_a {flags}")
    first = ip.user_ns["t_a"].run
    assert (first.options.max_workers, first.options.mode) == (1, "pipeline")
    cell(ip, f"%orchestrate --from t_plan --name t_b --run --wait --store {store}")
    assert set(ip.user_ns["t_b"].status.values()) == {"cached"}
    cell(ip, f"%orchestrate --from t_plan --name t_c --run --wait --no-cache --store {store}")
    assert set(ip.user_ns["t_c"].status.values()) == {"done"}


def test_config_settings_take_effect(ip, capsys):
    ip.run_line_magic("config", 'Orchestra.model = "my-model"')
    ip.run_line_magic("config", "Orchestra.max_workers = 3")
    ip.run_line_magic("config", 'Orchestra.store = "redis://:hunter2@127.0.0.1:6379/0"')
    ip.run_line_magic("orchestra", "config")
    out = capsys.readouterr().out
    assert "model        my-model" in out
    assert "max_workers  3" in out
    assert "hunter2" not in out and "redis://:***@127.0.0.1:6379/0" in out
    ip.run_line_magic("config", 'Orchestra.store = "memory://"')
    ip.user_ns["t_plan"] = PLAN
    cell(ip, "%orchestrate --from t_plan --name t_cfg --run --wait")
    run = ip.user_ns["t_cfg"].run
    assert run.options.max_workers == 3
    assert {r["model"] for r in ip.server.requests} == {"my-model"}


def test_user_errors_are_one_line_usage_errors(ip, monkeypatch, capsys):
    ip.user_ns["t_cyclic"] = [
        {"id": "a", "dependencies": ["b"]},
        {"id": "b", "dependencies": ["a"]},
    ]
    assert usage_error(ip, "%orchestrate --from t_cyclic") == (
        "--from t_cyclic: the plan has a dependency cycle: a -> b -> a"
    )
    assert "no variable 't_nothing'" in usage_error(ip, "%orchestrate --from t_nothing")
    assert "argument --mode: invalid choice: 'fast'" in usage_error(
        ip, "%%orchestrate --mode fast\ngoal"
    )
    assert (
        usage_error(ip, "%%orchestrate --name 2bad\ngoal")
        == "--name must be a Python name, not '2bad'"
    )
    from tests.support.redis_server import free_port

    message = usage_error(
        ip, f"%%orchestrate --store redis://:secret@127.0.0.1:{free_port()}/0\ngoal"
    )
    assert message.startswith("cannot reach Redis at redis://:***@127.0.0.1:")
    assert "secret" not in message
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert "set OPENAI_API_KEY" in usage_error(ip, "%%orchestrate --store memory://\ngoal")
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err


def test_planning_failure_with_wait_is_a_usage_error(ip):
    ip.server.responder = lambda request: Reply(content="I cannot plan that, sorry.")
    message = usage_error(ip, "%%orchestrate --name t_bad --wait --store memory://\ngoal")
    assert message.startswith("no usable plan after 3 answer(s): the answer contains no JSON plan")
    assert ip.user_ns["t_bad"].widget.message["level"] == "error"


def test_status_runs_show_clear_cache(ip, tmp_path, capsys):
    store = f"sqlite:///{tmp_path}/h.db"
    ip.user_ns["t_plan"] = PLAN
    cell(ip, f"%orchestrate --from t_plan --name t_h --run --wait --store {store}")
    capsys.readouterr()
    ip.run_line_magic("orchestra", "status")
    assert "Orchestration 't_h': run finished · 3/3 done" in capsys.readouterr().out
    ip.run_line_magic("orchestra", f"runs --store {store}")
    out = capsys.readouterr().out
    assert ip.user_ns["t_h"].run.id in out and "finished" in out
    ip.run_line_magic("orchestra", "show t_h")
    assert "Orchestration 't_h'" in capsys.readouterr().out
    assert "no orchestration named 'zz'" in usage_error(ip, "%orchestra show zz")
    ip.run_line_magic("orchestra", f"clear-cache --store {store}")
    assert capsys.readouterr().out.startswith("removed 4 entries from sqlite:///")


def test_resume_after_a_restart(ip, tmp_path):
    import time

    store = f"sqlite:///{tmp_path}/resume.db"
    calls: list[str] = []

    @onb.task_function(name="t_step", version="1")
    def step(task, inputs):
        calls.append(task.id)
        if task.id == "b" and len(calls) < 3:
            time.sleep(0.6)
        return task.id

    ip.user_ns["t_plan"] = [
        {"id": "a", "kind": "python", "function": "t_step"},
        {"id": "b", "kind": "python", "function": "t_step", "dependencies": ["a"]},
        {"id": "c", "kind": "python", "function": "t_step", "dependencies": ["b"]},
    ]
    cell(ip, f"%orchestrate --from t_plan --name t_first --run --store {store}")
    first = ip.user_ns["t_first"]
    ip.user_ns["t_calls"] = calls  # b's code has started (not just been handed to a thread)
    wait_for_b = "while 'b' not in t_calls:\n    await asyncio.sleep(0.01)"
    cell(ip, "import asyncio\n" + wait_for_b)
    first.cancel_all()
    cell(ip, "await t_first.run")
    assert first.run.state == "cancelled"
    assert calls == ["a", "b"]

    cell(ip, f"%orchestra resume {first.run.id} --name t_again --wait --store {store}")
    again = ip.user_ns["t_again"]
    assert again.run.ok
    assert again.run.status == {"a": "done", "b": "done", "c": "done"}
    assert calls == ["a", "b", "b", "c"]  # a came from the store


def test_executor_flag_and_setting(ip):
    ip.user_ns["t_plan"] = PLAN
    cell(ip, "%orchestrate --from t_plan --name t_ex --executor local:2 --store memory://")
    executor = ip.user_ns["t_ex"].options["executor"]
    assert isinstance(executor, onb.DaskExecutor)
    assert executor.cluster == "local:2"
    ip.run_line_magic("config", 'Orchestra.executor = "tcp://127.0.0.1:8786"')
    cell(ip, "%orchestrate --from t_plan --name t_ex2 --store memory://")
    assert ip.user_ns["t_ex2"].options["executor"].cluster == "tcp://127.0.0.1:8786"
    ip.run_line_magic("config", 'Orchestra.executor = ""')
    assert usage_error(ip, "%orchestrate --from t_plan --executor spark") == (
        "unknown executor 'spark': use local:N or tcp://host:8786"
    )


def test_budget_flag_setting_and_the_estimate_before_run(ip, capsys):
    ip.user_ns["t_plan"] = PLAN
    cell(ip, "%orchestrate --from t_plan --name t_bud --store memory:// --budget 1.50")
    orchestration = ip.user_ns["t_bud"]
    cell(ip, "t_est = await t_bud.estimate()")
    before = ip.user_ns["t_est"]
    assert before.llm_tasks == 3 and before.cached == 0
    assert str(before).startswith("≈ ") and "· ≈ $" in str(before)
    assert ip.server.requests == []  # an estimate asks nothing
    assert orchestration.options["budget"] == onb.Budget(usd=1.5)
    cell(ip, "%orchestrate --from t_plan --name t_bud --store memory:// --budget 1.50 --run --wait")
    run = ip.user_ns["t_bud"].run
    assert run.options.budget == onb.Budget(usd=1.5)
    assert run.ok

    ip.run_line_magic("config", 'Orchestra.budget = "200k tokens"')
    ip.run_line_magic("orchestra", "config")
    assert "budget       200k tokens" in capsys.readouterr().out
    cell(ip, "%orchestrate --from t_plan --name t_bud2 --run --wait --store memory://")
    assert ip.user_ns["t_bud2"].run.options.budget == onb.Budget(tokens=200_000)

    assert usage_error(ip, "%%orchestrate --budget cheap --store memory://\ngoal").startswith(
        "--budget: bad budget 'cheap': give dollars"
    )
    ip.run_line_magic("config", 'Orchestra.budget = "lots"')
    assert usage_error(ip, "%orchestrate --from t_plan --store memory://").startswith(
        "Orchestra.budget: bad budget 'lots'"
    )


def test_no_cache_with_run_plans_and_runs(ip):
    cell(ip, "%%orchestrate --name t_nc --run --no-cache --store memory://\nWrite a report")
    cell(ip, "t_nc_run = await t_nc")
    run = ip.user_ns["t_nc_run"]
    assert run.state == "finished"
    assert set(run.status.values()) == {"done"}
    assert ip.user_ns["t_nc"].widget.message["level"] == "info"


def test_max_workers_zero_is_refused_not_replaced(ip):
    message = usage_error(ip, "%%orchestrate --max-workers 0 --store memory://\ngoal")
    assert message == "--max-workers must be at least 1, not 0"


def test_an_error_in_background_planning_is_shown_and_logged(ip, caplog, monkeypatch):
    import logging

    from orchestra_nb.jupyter import _session

    def broken_start(self, *, refresh=False):
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(_session.Orchestration, "start", broken_start)
    with caplog.at_level(logging.ERROR, logger="orchestra_nb"):
        cell(ip, "%%orchestrate --name t_boom --run --no-stream --store memory://\nWrite a report")
        with pytest.raises(RuntimeError):
            cell(ip, "await t_boom")
    widget = ip.user_ns["t_boom"].widget
    assert widget.message["level"] == "error"
    assert widget.message["text"] == "planning failed: RuntimeError: engine exploded"
    assert "engine exploded" in caplog.text


def test_show_after_a_restart_reads_the_store(ip, tmp_path):
    store = f"sqlite:///{tmp_path}/show.db"
    ip.user_ns["t_plan"] = PLAN
    cell(ip, f"%orchestrate --from t_plan --name t_shown --run --wait --store {store}")
    run_id = ip.user_ns["t_shown"].run.id
    assert run_id.startswith("t_shown-")
    # a restarted kernel knows nothing of t_shown
    magics = next(c for c in ip.configurables if type(c).__name__ == "Orchestra")
    magics.orchestrations.clear()
    del ip.user_ns["t_shown"]
    ip.run_line_magic("orchestra", f"show t_shown --store {store}")
    shown = ip.user_ns["t_shown"]
    assert shown.graph.to_plan() == TaskGraph.from_plan(PLAN).to_plan()
    assert {shown.widget.statuses[t] for t in ("task_1", "task_2", "task_3")} == {"done"}
    assert run_id in shown.widget.message["text"]
    with pytest.raises(UsageError, match="no orchestration named 't_never'"):
        ip.run_line_magic("orchestra", f"show t_never --store {store}")


def test_resume_of_an_unknown_run_is_a_one_line_error(ip, tmp_path):
    store = f"sqlite:///{tmp_path}/none.db"
    with pytest.raises(UsageError) as caught:
        ip.run_line_magic("orchestra", f"resume no-such-run --store {store}")
    assert str(caught.value).startswith("no run 'no-such-run' in the store")
    assert "resumed_no_such_run" not in ip.user_ns


def test_approve_flag_gates_tasks_and_the_session_decides(ip):
    ip.user_ns["t_plan"] = PLAN
    cell(ip, "%orchestrate --from t_plan --name t_gate --run --approve task_1,task_3 "
             "--store memory://")  # fmt: skip
    session = ip.user_ns["t_gate"]
    assert session.run.options is not None and session.run.gates == ["task_1", "task_3"]
    cell(ip, "import asyncio\nwhile t_gate.awaiting_approval != ['task_1']:\n"
             "    await asyncio.sleep(0.01)")  # fmt: skip
    session.approve("task_1")
    cell(ip, "while t_gate.awaiting_approval != ['task_3']:\n    await asyncio.sleep(0.01)")
    request = session.approval_request("task_3")
    assert request.name == "Write" and set(request.inputs) == {"task_1", "task_2"}
    assert "## Step: Write" in request.prompt and "Result for ## Step: Research" in request.prompt
    session.reject("task_3", reason="not needed")
    cell(ip, "await t_gate.run")
    assert session.status["task_3"] == "skipped" and session.status["task_2"] == "done"

    cell(ip, "%orchestrate --from t_plan --name t_kind --run --approve llm --max-replans 1 "
             "--on-failure replan --store memory://")  # fmt: skip
    kind = ip.user_ns["t_kind"]
    assert kind.run.gates == "llm"
    assert (kind.run.options.on_failure, kind.run.options.max_replans) == ("replan", 1)
    cell(ip, "while len(t_kind.awaiting_approval) < 2:\n    await asyncio.sleep(0.01)")
    assert kind.awaiting_approval == ["task_1", "task_2"]
    kind.cancel_all()
    cell(ip, "await t_kind.run")


def test_approve_flag_errors_are_one_line(ip):
    ip.user_ns["t_plan"] = PLAN
    assert usage_error(ip, "%orchestrate --from t_plan --approve task_9") == (
        "--approve names unknown task(s): task_9"
    )
    assert usage_error(ip, "%orchestrate --from t_plan --approve ,") == (
        "--approve: approve needs 'all', a kind (llm, python, report) or task ids separated "
        "by commas"
    )
    assert "invalid choice: 'retry'" in usage_error(
        ip, "%orchestrate --from t_plan --on-failure retry"
    )
    assert usage_error(ip, "%orchestrate --from t_plan --max-replans -1") == (
        "--max-replans must be at least 0, not -1"
    )
