"""The command line's cost paths: ``estimate``, ``run --dry-run``, ``--budget`` on run and
resume (against the loopback server, requests counted), ``--log``, and bad values."""

from __future__ import annotations

import json

import pytest

from tests.support.cli import run_cli
from tests.support.llm_server import Reply

PLAN = {
    "goal": "Test",
    "subtasks": [{"id": f"t{i}", "name": f"Part {i}"} for i in range(1, 6)],
}


@pytest.fixture
def server(llm_server):
    llm_server.responder = lambda request: Reply(
        content="ok", usage={"prompt_tokens": 60, "completion_tokens": 1000}
    )
    return llm_server


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps(PLAN))
    return tmp_path


def env(server) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "k", "ORCHESTRA_MODEL": "gpt-4o-mini"}


def test_estimate_prints_the_table_and_creates_no_store(server, folder):
    done = run_cli("estimate", "plan.json", cwd=folder, env=env(server))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["task", "kind", "prompt", "output", "cost", "time", "from"]
    assert [line.split()[0] for line in lines[2:7]] == ["t1", "t2", "t3", "t4", "t5"]
    assert "prompts counted with o200k_base" in done.stdout
    assert "(list price of 2025-08-07)" in done.stdout
    assert lines[-1].startswith("estimate: ≈ ") and "tokens · ≈ $" in lines[-1]
    assert server.requests == []
    assert not (folder / ".orchestra").exists()


def test_dry_run_runs_nothing_and_creates_no_store(server, folder):
    done = run_cli("run", "plan.json", "--dry-run", "--budget", "2", cwd=folder, env=env(server))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].endswith("(budget $2.00)")
    assert server.requests == []
    assert not (folder / ".orchestra").exists()


def test_prices_from_a_file(server, folder):
    (folder / "prices.json").write_text(json.dumps({"gpt-4o-mini": {"input": 0, "output": 0}}))
    done = run_cli("estimate", "plan.json", "--prices", "prices.json", cwd=folder,
                   env=env(server))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(your price)" in done.stdout and "· ≈ $0 ·" in done.stdout
    (folder / "bad.json").write_text(json.dumps({"gpt-4o-mini": "free"}))
    bad = run_cli("estimate", "plan.json", "--prices", "bad.json", cwd=folder, env=env(server))
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "--prices price of 'gpt-4o-mini'" in bad.stderr


def test_budget_stops_the_run_and_resume_with_a_larger_one_finishes_it(server, folder):
    store = f"sqlite:///{folder}/r.db"
    common = ("--store", store, "--mode", "pipeline")
    stopped = run_cli(
        "run", "plan.json", *common, "--run-id", "r1", "--budget", "3000 tokens",
        "--log", "run.jsonl", cwd=folder, env=env(server),
    )  # fmt: skip
    assert stopped.returncode == 1
    assert len(server.requests) == 3  # each reports 1,060 tokens; a fourth would cross 3,000
    # the third answer cost more than its estimate: a budget is checked before a task starts
    budget_line = next(line for line in stopped.stdout.splitlines() if "budget reached" in line)
    assert budget_line.startswith(
        "  budget reached: spent 3,180 of 3,000 tokens (0 left; the next LLM task needs ≈ "
    )
    assert "2 LLM tasks not started — resume with a larger budget" in budget_line
    assert (
        f"resume with a larger budget: orchestra-nb resume r1 --store {store} --budget AMOUNT"
        in stopped.stderr
    )
    kinds = [json.loads(line)["kind"] for line in (folder / "run.jsonl").read_text().splitlines()]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and kinds.count("done") == 3

    resumed = run_cli(
        "resume", "r1", "--store", store, "--budget", "$1", cwd=folder, env=env(server)
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "run r1: finished · 5/5 done" in resumed.stdout
    assert len(server.requests) == 5  # the two left, nothing again


@pytest.mark.parametrize("value", ["cheap", "-1", "0", "1.5, 2", "$", "10 apples"])
@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_bad_budget_is_one_line(folder, command, value):
    target = "plan.json" if command == "run" else "r1"
    done = run_cli(command, target, "--budget", value, cwd=folder)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"orchestra-nb: error: argument --budget: bad budget {value!r}")
    assert "Traceback" not in done.stderr
