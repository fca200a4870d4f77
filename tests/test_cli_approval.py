"""``orchestra-nb`` with a person in the loop: the terminal prompt (through a real pty),
``approve``/``reject`` from another terminal, and revisions as they happen."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.support.cli import ROOT, run_cli
from tests.support.llm_server import LLMServer, Reply

STEPS = """\
import orchestra_nb as onb


@onb.task_function
def collect():
    "Load the numbers."
    return [3, 1, 2]


@onb.task_function
def survey(data):
    "Ask people."
    return f"surveyed {len(data)}"


@onb.task_function
def chart(data):
    "Draw a chart."
    raise ValueError("the chart library is not installed")


@onb.task_function
def table(data):
    "Make a table."
    return "| n |"
"""

PLAN = {
    "subtasks": [
        {"id": "data", "name": "Collect", "kind": "python", "function": "collect"},
        {"id": "survey", "name": "Survey", "description": "Ask 5,000 people", "kind": "python",
         "function": "survey", "dependencies": ["data"]},
        {"id": "report", "name": "Report", "kind": "report", "dependencies": ["survey"]},
    ]
}  # fmt: skip

FAILING = {
    "subtasks": [
        {"id": "data", "name": "Collect", "kind": "python", "function": "collect"},
        {"id": "chart", "name": "Chart", "kind": "python", "function": "chart",
         "dependencies": ["data"]},
        {"id": "report", "name": "Report", "kind": "report", "dependencies": ["chart"]},
    ]
}  # fmt: skip

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\r")


def setup(tmp_path: Path, plan: dict) -> str:
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "steps.py").write_text(STEPS)
    return f"sqlite:///{tmp_path}/runs.db"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env.pop("ORCHESTRA_STORE", None)
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


class Terminal:
    """``orchestra-nb ARGS`` with a pseudo-terminal as its stdin, stdout and stderr."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orchestra_nb.cli", *args],
            cwd=cwd,
            env=env or clean_env(),
            stdin=slave,
            stdout=slave,
            stderr=slave,
            close_fds=True,
        )
        os.close(slave)
        self.seen = ""  # everything shown so far, escape sequences and \r removed
        self._read_to = 0

    def _pump(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # the child closed the terminal
            return False
        if not chunk:
            return False
        self.seen += ANSI.sub("", chunk.decode("utf-8", errors="replace"))
        return True

    def expect(self, text: str, timeout: float = 60) -> str:
        """Wait until ``text`` is shown after what the last ``expect`` matched."""
        deadline = time.monotonic() + timeout
        while True:
            at = self.seen.find(text, self._read_to)
            if at >= 0:
                self._read_to = at + len(text)
                return self.seen
            assert time.monotonic() < deadline, f"never shown: {text!r}\n{self.seen}"
            assert self._pump(0.1) or text in self.seen, f"ended before {text!r}:\n{self.seen}"

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def finish(self, timeout: float = 60) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None or self._pump(0.05):
            if self.proc.poll() is not None and not self._pump(0.05):
                break
            assert time.monotonic() < deadline, f"did not end:\n{self.seen}"
            self._pump(0.05)
        os.close(self.master)
        return self.proc.wait(timeout=10)


def test_the_terminal_asks_before_a_gated_task_runs(tmp_path):
    store = setup(tmp_path, PLAN)
    term = Terminal("run", "plan.json", "--functions", "steps.py", "--store", store,
                    "--approve", "survey", "--run-id", "t1", cwd=tmp_path)  # fmt: skip
    shown = term.expect("approve, reject, or skip for now? [a/r/s]")
    assert "task survey awaits approval: Survey (python, function survey)" in shown
    assert "Ask 5,000 people" not in shown or "inputs:" in shown
    assert "data (Collect): [ 3, 1, 2 ]" in shown  # what it would work from
    term.type("s")
    term.expect("survey keeps waiting: press Enter to be asked again, or decide from another "
                f"terminal: orchestra-nb approve t1 survey --store {store}")  # fmt: skip
    term.type("")
    term.expect("approve, reject, or skip for now? [a/r/s]")
    term.type("a")
    term.expect("approved survey")
    shown = term.expect("run t1: finished · 3/3 done")
    assert term.finish() == 0, shown
    assert "Traceback" not in term.seen


def test_rejecting_at_the_terminal_asks_why_and_skips_the_rest(tmp_path):
    store = setup(tmp_path, PLAN)
    term = Terminal("run", "plan.json", "--functions", "steps.py", "--store", store,
                    "--approve", "survey", "--run-id", "t2", cwd=tmp_path)  # fmt: skip
    term.expect("[a/r/s]")
    term.type("maybe")
    term.expect("answer a (approve), r (reject) or s (skip for now):")
    term.type("r")
    term.expect("reason (Enter for none):")
    term.type("too costly")
    term.expect("rejected survey: too costly")
    shown = term.expect("run t2: failed")
    assert term.finish() == 1
    assert "not run survey: rejected: too costly" in term.seen, shown
    assert f"resume with: orchestra-nb resume t2 --store {store}" in term.seen


def test_a_revision_is_shown_and_accepted_at_the_terminal(tmp_path):
    store = setup(tmp_path, FAILING)
    revised = {
        "subtasks": [
            {"id": "table", "name": "Table", "kind": "python", "function": "table",
             "dependencies": ["data"]},
            {"id": "report", "name": "Report", "kind": "report", "dependencies": ["table"]},
        ]
    }  # fmt: skip
    with LLMServer() as server:
        server.script(Reply(content=json.dumps(revised)))
        env = clean_env(OPENAI_BASE_URL=server.url, OPENAI_API_KEY="sk-test")
        term = Terminal("run", "plan.json", "--functions", "steps.py", "--store", store,
                        "--approve", "report", "--on-failure", "replan", "--max-replans", "1",
                        "--run-id", "t3", cwd=tmp_path, env=env)  # fmt: skip
        term.expect("revision 1: asking for a revised plan (task 'chart': ValueError: the chart "
                    "library is not installed)")  # fmt: skip
        term.expect("revision 1 proposed: +table (Table)  -chart (Chart)  ~report (Report)")
        term.expect("accept the revised plan, or reject it? [a/r]")
        term.type("a")
        term.expect("revision 1 applied: +table (Table)  -chart (Chart)  ~report (Report)")
        term.expect("task report awaits approval: Report (report)")
        term.type("a")
        term.expect("run t3: finished · 3/3 done")
        assert term.finish() == 0, term.seen
        assert "plan revised 1 time(s)" in term.seen
        prompt = server.requests[0]["messages"][-1]["content"]
    assert "- data (Collect): [ 3, 1, 2 ]" in prompt and "Not started: report" in prompt


def test_without_a_terminal_the_command_to_decide_is_printed(tmp_path):
    store = setup(tmp_path, PLAN)
    args = ["run", "plan.json", "--functions", "steps.py", "--store", store,
            "--approve", "survey", "--run-id", "n1"]  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    told = f"task survey awaits approval; decide from another terminal: orchestra-nb approve n1 " \
           f"survey --store {store} (or reject)"  # fmt: skip
    err = read_until(child, told)
    for args, expected in [
        (["approve", "nope", "survey"], "no run 'nope' in the store"),
        (["approve", "n1", "zz"], "run 'n1' has no task 'zz'"),
        (["approve", "n1", "data"], "task 'data' of run 'n1' is not awaiting approval (done); "
                                    "awaiting approval: survey"),
        (["approve", "n1"], "the following arguments are required: task"),
    ]:  # fmt: skip
        bad = run_cli(*args, "--store", store, cwd=tmp_path)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
        assert expected in bad.stderr, bad.stderr
    missing = run_cli("approve", "n1", "survey", "--store", "sqlite:///nowhere.db", cwd=tmp_path)
    assert missing.returncode == 2 and "no store at nowhere.db" in missing.stderr

    decided = run_cli("approve", "n1", "survey", "--store", store, cwd=tmp_path)
    assert decided.returncode == 0, decided.stderr
    assert decided.stdout.startswith("approved survey of run n1: a running run acts on it")
    out, rest = child.communicate(timeout=60)
    assert child.returncode == 0, err + rest
    assert "run n1: finished · 3/3 done" in out


def test_interrupted_while_waiting_then_decided_and_resumed(tmp_path):
    store = setup(tmp_path, PLAN)
    args = ["run", "plan.json", "--functions", "steps.py", "--store", store,
            "--approve", "survey", "--run-id", "n2"]  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    read_until(child, "task survey awaits approval")
    time.sleep(0.5)  # the waiting state is in the run's record
    child.send_signal(signal.SIGINT)
    _out, err = child.communicate(timeout=60)
    assert child.returncode == 130
    hint = f"resume with: orchestra-nb resume n2 --store {store} --functions steps.py"
    assert err.rstrip().endswith(hint), err

    rejected = run_cli("reject", "n2", "survey", "--reason", "over budget", "--store", store,
                       cwd=tmp_path)  # fmt: skip
    assert rejected.returncode == 0, rejected.stderr
    assert rejected.stdout.startswith("rejected survey of run n2:")
    resumed = run_cli("resume", "n2", "--store", store, "--functions", "steps.py", cwd=tmp_path)
    assert resumed.returncode == 1, resumed.stderr
    assert "not run survey: rejected: over budget" in resumed.stdout


def read_until(child: subprocess.Popen, text: str, timeout: float = 60) -> str:
    """Read the child's stderr until ``text`` shows (without waiting for its end)."""
    seen = ""
    fd = child.stderr.fileno()
    deadline = time.monotonic() + timeout
    while text not in seen:
        assert time.monotonic() < deadline, f"never shown: {text!r}\n{seen}"
        assert child.poll() is None, f"ended before {text!r}: {seen}{child.stderr.read()}"
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            seen += os.read(fd, 4096).decode("utf-8", errors="replace")
    return seen
