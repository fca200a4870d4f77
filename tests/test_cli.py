"""The orchestra-nb command: render, run, resume, report, runs — on the demo's own files —
and every bad input a user can give it: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "notebooks"
RECORDING = DEMO / "recordings" / "market_research.json"
GOAL = "Write a market research report on solid-state batteries for EV makers"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env.pop("ORCHESTRA_STORE", None)
    env["PYTHONPATH"] = str(ROOT)
    return env


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_main_job_offline(tmp_path):
    result = cli(
        "run",
        "--goal",
        GOAL,
        "--functions",
        str(DEMO / "market_research.py"),
        "--llm",
        f"replay:{RECORDING}",
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    # every artifact's path is printed
    assert "finished · 9/9 done · 3,440 replayed tokens" in result.stdout
    assert f"report: {out / 'report.html'}\n" in result.stdout
    assert f"markdown: {out / 'report.md'}\n" in result.stdout
    assert f"plan: {out / 'plan.svg'}\n" in result.stdout
    assert f"results: {out / 'results'}/ (9 files)\n" in result.stdout

    report = (out / "report.md").read_text()
    notice, _, body = report.partition("\n\n")
    assert notice.startswith("> **Replayed answers — no model ran.**")
    assert f"`{RECORDING}`" in notice
    assert "example answers written for the demo" in notice  # the recording's own note
    assert "Token counts are the recording's, replayed." in notice
    assert body.startswith("# Solid-state batteries for EV makers")
    assert body.count("data:image/png;base64,") == 2
    html = (out / "report.html").read_text()
    assert html.index("Replayed answers") < html.index("<h1>Solid-state batteries for EV makers")
    assert "3,440 replayed tokens" in html
    assert "data:image/svg+xml;base64," in html  # the plan
    svg = (out / "plan.svg").read_text()
    assert svg.lstrip().startswith("<?xml")
    assert 'id="legend"' in svg and "critical path" in svg  # the key to colours and shapes
    assert (out / "results" / "task_2.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((out / "results" / "task_1.json").read_text())["note"]

    runs = cli("runs", "--store", f"sqlite:///{tmp_path}/r.db", cwd=tmp_path)
    run_id = runs.stdout.split()[0]
    assert "finished" in runs.stdout and GOAL[:40] in runs.stdout

    again = cli(
        "report",
        run_id,
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        "-o",
        str(tmp_path / "again"),
        cwd=tmp_path,
    )
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "again" / "report.md").read_text().endswith(body)

    svg = cli("render", "--run", run_id, "--store", f"sqlite:///{tmp_path}/r.db", cwd=tmp_path)
    assert "status&#45;done" in svg.stdout  # graphviz writes '-' as &#45; in attributes


class SaysNothingOfTheReplay(AssertionError):
    """The one failure the test below expects until the engine records the LLM's source."""


def test_a_report_written_later_from_the_store_says_it_was_replayed(tmp_path):
    store = f"sqlite:///{tmp_path}/r.db"
    plan = {"subtasks": [{"id": "a", "name": "Summarize", "description": "One line."}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    recording = tmp_path / "rec.json"
    from orchestra_nb._actions import llm_messages
    from orchestra_nb._plan import TaskGraph

    task = TaskGraph.from_plan(plan).tasks["a"]
    messages = llm_messages(task, {}, goal=None, names={"a": "Summarize"})
    recording.write_text(json.dumps({"entries": [{"messages": messages, "response": "ok"}]}))
    ran = cli(
        "run",
        "plan.json",
        "--llm",
        f"replay:{recording}",
        "--store",
        store,
        "--run-id",
        "r1",
        cwd=tmp_path,
    )
    assert ran.returncode == 0, ran.stderr
    later = cli("report", "r1", "--store", store, "-o", "later", cwd=tmp_path)
    assert later.returncode == 0, later.stderr
    if not (tmp_path / "later" / "report.md").read_text().startswith("> **Replayed answers"):
        raise SaysNothingOfTheReplay("the report does not say its answers were replayed")


def test_run_a_plan_file_then_resume(tmp_path):
    plan = {
        "subtasks": [
            {"id": "a", "kind": "python", "function": "step"},
            {"id": "b", "kind": "python", "function": "step", "dependencies": ["a"]},
            {"id": "c", "kind": "python", "function": "boom", "dependencies": ["b"]},
        ]
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "steps.py").write_text(
        "import os\nimport orchestra_nb as onb\n\n"
        "@onb.task_function\ndef step(task):\n    return task.id\n\n"
        "@onb.task_function\ndef boom():\n"
        "    if os.path.exists('broken'):\n"
        "        raise RuntimeError('not today')\n"
        "    return 'ok'\n"
    )
    (tmp_path / "broken").write_text("")
    store = f"sqlite:///{tmp_path}/r.db"
    failed = cli(
        "run",
        "plan.json",
        "--functions",
        "steps.py",
        "--store",
        store,
        "--run-id",
        "r1",
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert "failed c: RuntimeError: not today" in failed.stdout
    assert f"resume with: orchestra-nb resume r1 --store {store} --functions steps.py\n" in (
        failed.stderr
    )
    (tmp_path / "broken").unlink()
    resumed = cli(
        "resume",
        "r1",
        "--functions",
        "steps.py",
        "--store",
        store,
        "--max-workers",
        "2",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "run r1: finished · 3/3 done" in resumed.stdout

    drawn = cli("render", "plan.json", "-o", "plan.svg", cwd=tmp_path)
    assert drawn.returncode == 0
    assert 'id="node&#45;a"' in (tmp_path / "plan.svg").read_text()


def test_help_version_and_defaults(tmp_path):
    bare = cli(cwd=tmp_path)
    assert bare.returncode == 0
    assert bare.stdout.startswith("usage: orchestra-nb") and "runs" in bare.stdout
    version = cli("--version", cwd=tmp_path)
    assert (version.returncode, version.stdout) == (0, "orchestra-nb 0.1.0\n")
    helped = cli("run", "--help", cwd=tmp_path)
    text = " ".join(helped.stdout.split())
    assert "tasks running at once (default: 5)" in text
    assert "pipeline: one task at a time in dependency order" in text  # --mode explained
    assert "(default: dag)" in text
    assert "resume" in cli("--help", cwd=tmp_path).stdout
    assert "--max-workers N" in cli("resume", "--help", cwd=tmp_path).stdout


def test_read_only_commands_create_no_store(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    listed = cli("runs", cwd=empty)
    assert listed.returncode == 0
    assert (
        listed.stderr
        == "no runs yet: .orchestra/results.db does not exist (nothing has run here)\n"
    )
    for args in (("report", "r1"), ("render", "--run", "r1"), ("resume", "r1")):
        result = cli(*args, cwd=empty)
        assert result.returncode == 2
        assert result.stderr.startswith("orchestra-nb: error: no store at .orchestra/results.db")
    assert cli("runs", "--store", "sqlite:///elsewhere.db", cwd=empty).returncode == 2
    assert list(empty.iterdir()) == []


PLANS = {
    "empty.json": "",
    "blank.json": "  \n\t\n",
    "cycle.json": '{"subtasks": [{"id": "a", "dependencies": ["b"]}, '
    '{"id": "b", "dependencies": ["a"]}]}',
    "none.json": '{"subtasks": []}',
    "prose.json": "not a plan at all",
    "python.json": '{"subtasks": [{"id": "a", "kind": "python", "function": "f"}]}',
    "llm.json": '{"subtasks": [{"id": "a", "name": "Write"}]}',
    "report.json": '{"subtasks": [{"id": "a", "kind": "report"}]}',
    "truncated.json": '{"subtasks": [ {"id": "a",',
    "broken.py": "def broken(:\n",
    "raises.py": "raise RuntimeError('not in this file')\n",
    "afile": "a file, not a folder and not a database\n" * 20,
    "tiny": "x",  # SQLite would make a database of it
}

# (arguments, the start of the one error line after "orchestra-nb: error: ")
BAD_INPUTS = [
    (["run", "missing.json"], "plan file missing.json: no such file"),
    (["render", "missing.json"], "plan file missing.json: no such file"),
    (["render", "."], "plan file .: is a directory, not a file"),
    (["run", "/proc/self/mem"], "plan file /proc/self/mem: cannot read it"),
    (["run", "binary.json"], "plan file binary.json: not UTF-8 text"),
    (["run", "empty.json"], "plan file empty.json: the file is empty"),
    (["render", "blank.json"], "plan file blank.json: the file is empty"),
    (["render", "cycle.json"], "plan file cycle.json: the plan has a dependency cycle: a -> b"),
    (["render", "none.json"], "plan file none.json: the plan has no tasks"),
    (["render", "prose.json"], "plan file prose.json: the file contains no JSON plan"),
    (["run"], "run needs a plan file or --goal GOAL"),
    (["run", "report.json", "--goal", "x"], "give a plan file or --goal, not both"),
    (["render"], "render needs a plan file or --run RUN_ID"),
    (["run", "--goal", " "], "the goal is empty"),
    (["plan", ""], "the goal is empty"),
    (
        ["run", "python.json"],
        "task 'a' needs the Python function 'f'; load the file that "
        "defines functions with --functions FILE.py",
    ),
    (["run", "llm.json"], "no LLM is configured"),
    (
        ["run", "llm.json", "--llm", "replay:missing.json"],
        "no recording file at missing.json: record one with --llm record:missing.json",
    ),
    (["run", "llm.json", "--llm", "bogus:x"], "unknown LLM spec 'bogus:x'"),
    (
        ["run", "--goal", GOAL, "--llm", f"replay:{RECORDING}", "--functions", "other.py"],
        f"no recorded answer for {GOAL!r} in {RECORDING}: it was recorded with the functions "
        "competitor_chart, load_market_data, market_size_chart offered (now: tally): load the "
        "file that defines them with --functions FILE.py",
    ),
    (["run", "report.json", "--functions", "missing.py"], "--functions missing.py: no such file"),
    (["run", "report.json", "--functions", "."], "--functions .: is a directory, not a file"),
    (
        ["run", "report.json", "--functions", "broken.py"],
        "--functions broken.py: SyntaxError: invalid syntax (broken.py, line 1)",
    ),
    (
        ["run", "report.json", "--functions", "raises.py"],
        "--functions raises.py: RuntimeError: not in this file",
    ),
    (["run", "report.json", "--max-workers", "0"], "argument --max-workers: must be at least 1"),
    (["run", "report.json", "--max-workers", "x"], "argument --max-workers: expected a whole"),
    (["run", "report.json", "--retries", "-1"], "argument --retries: must be at least 0"),
    (["run", "report.json", "--timeout", "0"], "argument --timeout: must be a positive number"),
    (["run", "report.json", "--timeout", "nan"], "argument --timeout: must be a positive number"),
    (["run", "report.json", "--mode", "fast"], "argument --mode: invalid choice: 'fast'"),
    (["run", "report.json", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["run", "report.json", "--out", "afile"], "--out afile: exists and is not a folder"),
    (["run", "report.json", "--store", "ftp://x"], "unsupported store URL 'ftp://x'"),
    (
        ["run", "report.json", "--store", "redis://:pw@127.0.0.1:1/0"],
        "cannot reach Redis at redis://:***@127.0.0.1:1/0",
    ),
    (["runs", "--store", "redis://127.0.0.1:1/0"], "cannot reach Redis at redis://127.0.0.1:1/0"),
    (["render", "report.json", "-o", "."], "-o .: is a directory; name a file"),
    (["runs", "--limit", "-1"], "argument --limit: must be at least 1, not -1"),
    (["runs", "--limit", "0"], "argument --limit: must be at least 1, not 0"),
    (["runs", "--store", "sqlite:///nowhere.db"], "no store at nowhere.db: no run was recorded"),
    (["runs", "--store", "sqlite:///afile"], "store sqlite:///afile: afile is not a SQLite"),
    (["runs", "--store", "sqlite:///tiny"], "store sqlite:///tiny: tiny is not a SQLite"),
    (["run", "report.json", "--store", "sqlite:///tiny"], "store sqlite:///tiny: tiny is not a"),
    (["runs", "--store", "sqlite:///."], "store sqlite:///.: . is a directory"),
    (["report", "ghost", "--store", "sqlite:///runs.db"], "no run 'ghost' in the store"),
    (["resume", "ghost", "--store", "sqlite:///runs.db"], "no run 'ghost' in the store"),
    (["resume", "r", "--max-workers", "0"], "argument --max-workers: must be at least 1"),
    (["resume"], "the following arguments are required: run_id"),
    (
        ["report", "ghost", "--store", "sqlite:///runs.db", "-o", "afile"],
        "--out afile: exists and is not a folder",
    ),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
]


@pytest.fixture(scope="module")
def bad_input_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad-inputs")
    for name, text in PLANS.items():
        (folder / name).write_text(text)
    (folder / "binary.json").write_bytes(b'{"subtasks": "\xff\xfe\x00"}')
    # functions the market-research recording was not made with
    (folder / "other.py").write_text(
        "import orchestra_nb as onb\n\n\n@onb.task_function\ndef tally(inputs):\n"
        '    """Count the inputs."""\n    return len(inputs)\n'
    )
    # a real store holding no runs
    made = cli("run", "report.json", "--store", "sqlite:///runs.db", cwd=folder)
    assert made.returncode == 0, made.stderr
    return folder


def _assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert result.stderr.count("\n") == 1 and result.stderr.endswith("\n"), result.stderr
    assert result.stderr.startswith(f"orchestra-nb: error: {expected}"), result.stderr
    assert "llm='" not in result.stderr  # hints in the CLI's syntax, not Python's


@pytest.mark.parametrize(("args", "expected"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_every_bad_input_is_one_line_without_traceback(bad_input_dir, args, expected):
    before = {p.name: p.stat().st_mtime_ns for p in bad_input_dir.iterdir()}
    _assert_one_line_error(cli(*args, cwd=bad_input_dir), expected)
    after = {p.name: p.stat().st_mtime_ns for p in bad_input_dir.iterdir()}
    assert after == before  # nothing created, nothing changed


def test_a_truncated_plan_file_is_refused(bad_input_dir):
    result = cli("render", "truncated.json", cwd=bad_input_dir)
    _assert_one_line_error(result, "plan file truncated.json: ")


def test_a_task_error_hints_in_flag_syntax(bad_input_dir):
    recording = bad_input_dir / "empty-recording.json"
    recording.write_text('{"entries": []}')
    result = cli(
        "run", "llm.json", "--llm", f"replay:{recording}", "--store", "memory://", cwd=bad_input_dir
    )
    assert result.returncode == 1
    assert f"record it with --llm record:{recording} and a configured model" in result.stdout
    assert "llm='" not in result.stdout + result.stderr


def test_debug_shows_the_traceback(bad_input_dir):
    result = cli("--debug", "render", "cycle.json", cwd=bad_input_dir)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.rstrip().endswith("the plan has a dependency cycle: a -> b -> a")
    also = cli("render", "cycle.json", "--debug", cwd=bad_input_dir)
    assert "Traceback (most recent call last)" in also.stderr


CHAIN_STEPS = """\
import asyncio
import os

import orchestra_nb as onb

LOG = os.environ["CHAIN_LOG"]


def _log(line):
    with open(LOG, "a") as fh:
        fh.write(line + "\\n")


@onb.task_function
async def step(task):
    _log("start " + task.id)
    if task.id == "t3" and not os.path.exists("go"):
        await asyncio.sleep(120)  # the test interrupts the run here
    _log("end " + task.id)
    return task.id
"""


def test_ctrl_c_reports_honest_counts_and_how_to_resume(tmp_path):
    plan = {
        "subtasks": [
            {
                "id": f"t{i}",
                "kind": "python",
                "function": "step",
                "dependencies": [f"t{i - 1}"] if i > 1 else [],
            }
            for i in range(1, 9)
        ]
    }
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    (tmp_path / "steps.py").write_text(CHAIN_STEPS)
    log = tmp_path / "log.txt"
    env = {**_env(), "CHAIN_LOG": str(log)}
    store = f"sqlite:///{tmp_path}/r.db"
    args = ["run", "plan.json", "--functions", "steps.py", "--store", store, "--run-id", "r1"]
    child = subprocess.Popen(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # a shell without job control starts background children with SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    # t3 starts only once t1 and t2 are done and committed
    while "start t3" not in (log.read_text() if log.exists() else ""):
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the run never reached t3"
        time.sleep(0.02)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)

    assert child.returncode == 130, err
    assert "Traceback" not in out + err
    lines = err.rstrip("\n").split("\n")
    assert lines[-2].startswith("orchestra-nb: interrupted — run r1: cancelled · 2/8 done · ")
    assert "6 cancelled" in lines[-2]
    assert lines[-1] == f"resume with: orchestra-nb resume r1 --store {store} --functions steps.py"
    assert "2/8" in err and "8/8" not in err and "cancelled=6" in err  # the bar stayed honest
    assert log.read_text().split("\n").count("end t1") == 1

    (tmp_path / "go").write_text("")
    resumed = subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", *lines[-1].split()[3:]],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "run r1: finished · 8/8 done" in resumed.stdout
    ends = re.findall(r"^end (t\d)$", log.read_text(), re.MULTILINE)
    assert sorted(ends) == sorted(f"t{i}" for i in range(1, 9))  # each ran to the end once


# --- a plan that runs while it streams ------------------------------------------------------------

STREAMED_PLAN = json.dumps(
    {"subtasks": [
        {"id": "facts", "name": "Facts", "description": "Collect facts.", "dependencies": []},
        {"id": "angle", "name": "Angle", "description": "Pick an angle.", "dependencies": []},
        {"id": "draft", "name": "Draft", "description": "Write it.",
         "dependencies": ["facts", "angle"]},
    ]},
    indent=1,
)  # fmt: skip


def _streaming_server():
    import threading

    from tests.support.llm_server import LLMServer, Reply

    held = threading.Event()
    seen: list[tuple[str, bool]] = []  # (task request's first line, plan answer ended?)

    def respond(request):
        if "You plan work" in request["messages"][0]["content"]:
            return Reply(content=STREAMED_PLAN, piece_chars=6, hold_last=held)
        ended = bool(server.streams) and server.streams[0].ended
        seen.append((request["messages"][-1]["content"].splitlines()[0], ended))
        held.set()  # a task asked the model: the plan's last piece may go now
        return Reply(content="Some findings.")

    server = LLMServer(respond)
    return server, seen


def _run_goal(server, tmp_path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**_env(), "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "sk-test"}
    return subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", "run", "--goal", "Write a note",
         "--store", f"sqlite:///{tmp_path}/r.db", *flags],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_run_goal_starts_tasks_while_the_plan_streams(tmp_path):
    server, seen = _streaming_server()
    with server:
        result = _run_goal(server, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "finished · 3/3 done" in result.stdout
    first_step, plan_ended = seen[0]
    assert first_step in ("## Step: Facts", "## Step: Angle")
    assert plan_ended is False  # the server had not sent the plan's last piece yet
    assert server.requests[0]["stream"] is True
    bars = [line for line in result.stderr.replace("\r", "\n").splitlines() if "task/s" in line]
    assert bars and "3/3" in bars[-1]  # tasks joined the bar's total as they were added


def test_run_goal_no_stream_plans_first(tmp_path):
    server, seen = _streaming_server()
    with server:
        result = _run_goal(server, tmp_path, "--no-stream", "--max-workers", "1")
    assert result.returncode == 0, result.stderr
    assert "planned 3 tasks" in result.stderr
    assert "stream" not in server.requests[0]
    assert server.streams == [] and len(seen) == 3  # nothing was streamed
