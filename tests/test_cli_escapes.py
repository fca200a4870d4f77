"""Terminal escapes as an attack on the CLI: stored goals, task names and LLM error texts.

A shared store or an LLM answer can carry ``ESC ] 0 ; TITLE BEL`` (retitles the
terminal), ``ESC [ 2 J`` (clears it) or the single-byte C1 form of the same
(``\\x9b``). Planted in a real SQLite store and served by a real loopback LLM
server, none of them may reach the terminal: every command's stdout and stderr
are read as bytes and searched for ESC, BEL and every C0/C1 control byte.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestra_nb.store import open_store
from tests.support.llm_server import Reply, error_body

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x9b2J\x1b[31mred\x1b[0m\x00\x7f\rspoof"
# every control character but tab, newline and carriage return (the progress bar redraws its
# line with it; in the hostile texts it is escaped like the rest)
FORBIDDEN = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    base["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        timeout=120,
    )


def assert_nothing_reaches_the_terminal(result: subprocess.CompletedProcess) -> str:
    """No control byte in stdout or stderr, raw or UTF-8 encoded; returns both as text."""
    for stream in (result.stdout, result.stderr):
        assert b"\x1b" not in stream and b"\x07" not in stream and b"\x9b" not in stream
        text = stream.decode("utf-8")  # also fails on a raw C1 byte
        assert not FORBIDDEN.search(text), FORBIDDEN.findall(text)
    return result.stdout.decode() + result.stderr.decode()


def plant(url: str) -> None:
    """A run record as anyone who can write to the store could leave it."""
    plan = {
        "goal": "report " + HOSTILE,
        "subtasks": [
            {"id": "a", "name": "step " + HOSTILE, "description": HOSTILE},
            {"id": "b", "name": "next", "dependencies": ["a"]},
        ],
    }

    async def write() -> None:
        store = open_store(url)
        await store.save_run(
            "planted",
            {
                "run_id": "planted",
                "created": 1.7e9,
                "state": "failed" + HOSTILE,
                "goal": plan["goal"],
                "graph": json.dumps(plan),
                "keys": {"a": "k-a", "b": "k-b"},
                "options": {},
                "tasks": "2" + HOSTILE,
            },
        )
        await store.save_run_tasks(
            "planted", {"a": {"status": "failed", "error": "RuntimeError: " + HOSTILE}}
        )
        await store.close()

    asyncio.run(write())


def test_a_planted_run_record_cannot_drive_the_terminal(tmp_path):
    url = f"sqlite:///{tmp_path}/shared.db"
    plant(url)

    listed = cli("runs", "--store", url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    text = assert_nothing_reaches_the_terminal(listed)
    assert "planted" in text
    assert "report \\u001b]0;PWNED\\u0007\\u001b[2J\\u009b2J" in text  # shown, not obeyed

    drawn = cli("render", "--run", "planted", "--store", url, cwd=tmp_path)
    assert drawn.returncode == 0, drawn.stderr
    assert_nothing_reaches_the_terminal(drawn)
    assert "step \\u001b]0;PWNED" in drawn.stdout.decode()

    reported = cli("report", "planted", "--store", url, "-o", "out", cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    assert_nothing_reaches_the_terminal(reported)


def test_llm_error_texts_cannot_drive_the_terminal(tmp_path, llm_server):
    llm_server.script(Reply(status=400, body=error_body("bad request " + HOSTILE)))
    env = {"OPENAI_BASE_URL": llm_server.url, "OPENAI_API_KEY": "sk-test"}
    planned = cli("plan", "a goal", cwd=tmp_path, env=env)
    assert planned.returncode == 2
    text = assert_nothing_reaches_the_terminal(planned)
    assert text.count("\n") == 1 and "bad request \\u001b]0;PWNED" in text


def test_an_llm_plan_with_escapes_prints_as_valid_json(tmp_path, llm_server):
    plan = {
        "subtasks": [
            {"id": "a", "name": "one " + HOSTILE, "description": "x", "dependencies": []},
            {"id": "b", "name": "two", "description": "y", "dependencies": ["a"]},
            {"id": "c", "name": "three", "description": "z", "dependencies": ["b"]},
        ]
    }
    llm_server.script(Reply(content=json.dumps(plan)))
    env = {"OPENAI_BASE_URL": llm_server.url, "OPENAI_API_KEY": "sk-test"}
    planned = cli("plan", "a goal", cwd=tmp_path, env=env)
    assert planned.returncode == 0, planned.stderr
    assert_nothing_reaches_the_terminal(planned)
    printed = json.loads(planned.stdout)  # the escapes are JSON escapes: the data survives
    assert printed["subtasks"][0]["name"].startswith("one \x1b]0;PWNED\x07")


@pytest.mark.parametrize("where", ["error", "task id"])
def test_failed_task_texts_cannot_drive_the_terminal(tmp_path, where):
    tid = "t" + HOSTILE.replace("\x00", "") if where == "task id" else "t"
    plan = {"subtasks": [{"id": tid, "kind": "python", "function": "boom"}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "steps.py").write_text(
        "import orchestra_nb as onb\n\n"
        "@onb.task_function\ndef boom():\n"
        f"    raise RuntimeError({HOSTILE!r})\n"
    )
    ran = cli("run", "plan.json", "--functions", "steps.py", "--store", "memory://", cwd=tmp_path)
    assert ran.returncode in (1, 2), ran.stderr
    text = assert_nothing_reaches_the_terminal(ran)
    assert "\\u001b]0;PWNED" in text
    assert "\rspoof" not in text  # a carriage return in the data cannot overwrite the line
