"""The orchestra-nb command: render, run, resume, report, runs — on the demo's own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "notebooks"
GOAL = "Write a market research report on solid-state batteries for EV makers"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=cwd,
        env=env,
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
        f"replay:{DEMO / 'recordings' / 'market_research.json'}",
        "--store",
        f"sqlite:///{tmp_path}/r.db",
        "--out",
        str(tmp_path / "out"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "finished · 9/9 done" in result.stdout
    assert f"report: {tmp_path / 'out' / 'report.html'}" in result.stdout
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith("# Solid-state batteries for EV makers")
    assert report.count("data:image/png;base64,") == 2
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<h1>Solid-state batteries for EV makers</h1>" in html
    assert "data:image/svg+xml;base64," in html  # the plan
    assert (tmp_path / "out" / "plan.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "out" / "results" / "task_2.png").read_bytes().startswith(b"\x89PNG")
    assert json.loads((tmp_path / "out" / "results" / "task_1.json").read_text())["note"]

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
    assert (tmp_path / "again" / "report.md").read_text() == report

    svg = cli("render", "--run", run_id, "--store", f"sqlite:///{tmp_path}/r.db", cwd=tmp_path)
    assert "status&#45;done" in svg.stdout  # graphviz writes '-' as &#45; in attributes


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
    (tmp_path / "broken").unlink()
    resumed = cli("resume", "r1", "--functions", "steps.py", "--store", store, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "run r1: finished · 3/3 done" in resumed.stdout

    drawn = cli("render", "plan.json", "-o", "plan.svg", cwd=tmp_path)
    assert drawn.returncode == 0
    assert 'id="node&#45;a"' in (tmp_path / "plan.svg").read_text()


def test_errors_are_one_line(tmp_path):
    missing = cli("run", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        2,
        "orchestra-nb: error: run needs a plan file or --goal GOAL\n",
    )
    no_file = cli(
        "run", "--goal", "x", "--functions", "nope.py", "--llm", "replay:r.json", cwd=tmp_path
    )
    assert no_file.stderr == "orchestra-nb: error: --functions nope.py: no such file\n"
    unknown = cli("report", "ghost", "--store", f"sqlite:///{tmp_path}/r.db", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("orchestra-nb: error: no run 'ghost' in the store")
