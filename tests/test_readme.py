"""The README is true: its snippets run as written, as scripts, in a kernel and in a shell.

Python blocks run as scripts (a block starting with ``%`` is notebook-only and
runs in a kernel), ``# -> X`` comments are the output the README promises, the
"From Python" snippet also runs in a notebook cell the way the README says, and
the "From a shell" commands run one after another. LLM calls go to the
OpenAI-compatible loopback server the tests start; nothing here needs a network.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.llm_server import LLMServer, Reply

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, re.S)
PYTHON = [code for lang, code in BLOCKS if lang == "python" and not code.startswith("%")]
FROM_PYTHON = next(code for code in PYTHON if "async def runner" in code)
MAGICS = next(code for lang, code in BLOCKS if lang == "python" and code.startswith("%"))
CELL_MAGIC = next(code for lang, code in BLOCKS if code.startswith("%%orchestrate"))
SHELL = next(code for lang, code in BLOCKS if lang == "bash" and "orchestra-nb plan" in code)

PLAN = {
    "subtasks": [
        {
            "id": "task_1",
            "name": "Research",
            "description": "Find sources",
            "dependencies": [],
            "estimated_time": 10,
        },
        {
            "id": "task_2",
            "name": "Analyze",
            "description": "Analyze them",
            "dependencies": ["task_1"],
            "estimated_time": 20,
        },
        {
            "id": "task_3",
            "name": "Write",
            "description": "Write it up",
            "dependencies": ["task_2"],
            "estimated_time": 15,
        },
    ]
}


def respond(request: dict) -> Reply:
    if "You plan work" in request["messages"][0]["content"]:
        return Reply(content=json.dumps(PLAN))
    return Reply(content="Some findings, in Markdown.")


@pytest.fixture(scope="module")
def model():
    with LLMServer(respond) as server:
        yield server


def _env(model: LLMServer, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env.pop("ORCHESTRA_STORE", None)
    env.update(PYTHONPATH=str(ROOT), OPENAI_BASE_URL=model.url, OPENAI_API_KEY="sk-test")
    env.update(extra)
    return env


def promised(code: str) -> list[str]:
    """The output a block's ``# -> X`` comments promise, in order."""
    return re.findall(r"# -> (.*)$", code, re.MULTILINE)


def test_the_snippets_are_found():
    assert len(PYTHON) >= 2
    assert promised(FROM_PYTHON)[:2] == ["finished", "{'task_1': 'done', 'task_2': 'done'}"]
    assert "%load_ext orchestra_nb" in MAGICS


@pytest.mark.parametrize("index", range(len(PYTHON)))
def test_each_python_snippet_runs_as_a_script(index, tmp_path, model):
    code = PYTHON[index]
    (tmp_path / "snippet.py").write_text(code)
    result = subprocess.run(
        [sys.executable, "snippet.py"],
        cwd=tmp_path,
        env=_env(model),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    expected = promised(code)
    assert result.stdout.splitlines()[: len(expected)] == expected


def test_the_from_python_snippet_run_again_finds_its_results(tmp_path, model):
    (tmp_path / "snippet.py").write_text(FROM_PYTHON)
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "snippet.py"],
            cwd=tmp_path,
            env=_env(model),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    # "A second execution of the script ... prints `cached` for both tasks."
    assert "prints `cached` for both tasks" in " ".join(README.split())
    assert result.stdout.splitlines()[1] == "{'task_1': 'cached', 'task_2': 'cached'}"


def _execute(cells: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """Run cells in a real kernel; each cell's stdout (errors fail the test)."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return [
        "".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream")
        for cell in nb.cells
    ]


def test_the_from_python_snippet_runs_in_a_notebook_as_the_readme_says(tmp_path, model):
    last = FROM_PYTHON.rstrip().splitlines()[-1]
    script_form, _, note = last.partition("  # ")
    assert script_form == "run = asyncio.run(main())"
    notebook_form = note.rsplit(": ", 1)[1]  # "... already running: run = await main()"
    assert notebook_form == "run = await main()"
    cell = FROM_PYTHON.rstrip()[: -len(last)] + notebook_form
    outputs = _execute([cell, "print(run.state, len(run.results))"], tmp_path, _env(model))
    assert outputs[0].splitlines() == promised(FROM_PYTHON)
    assert outputs[1] == "finished 2\n"


def test_the_notebook_snippet_runs_in_a_kernel(tmp_path, model):
    # a fresh clone's recording at the path the snippet names, and nothing else: the
    # snippet imports none of the demo's code
    recording = tmp_path / "notebooks" / "recordings" / "market_research.json"
    recording.parent.mkdir(parents=True)
    recording.write_bytes((ROOT / "notebooks" / "recordings" / "market_research.json").read_bytes())
    env = _env(model)
    del env["OPENAI_BASE_URL"], env["OPENAI_API_KEY"]  # offline: the replay answers
    outputs = _execute(
        [
            MAGICS,
            CELL_MAGIC,
            "print(research.run.state, len(research.run.results))",
            "print(research.report.splitlines()[0])",
            "import sys; print('market_research' in sys.modules)",
        ],
        tmp_path,
        env,
    )
    assert outputs[2] == "finished 6\n", outputs  # the plan made without Python functions
    assert outputs[4] == "False\n"
    assert outputs[3] == "# Solid-state batteries for EV makers\n"  # the final report's title


def test_the_shell_commands_run_one_after_another(tmp_path, model):
    binary = Path(sys.executable).parent / "orchestra-nb"
    command = str(binary) if binary.exists() else shutil.which("orchestra-nb")
    assert command, "orchestra-nb is not installed (pip install -e .)"
    env = _env(model)
    run_id = None
    for line in SHELL.strip().splitlines():
        words = shlex.split(line.split("#", 1)[0])
        assert words[0] == "orchestra-nb"
        words = [
            "Write a market research report" if w == "GOAL" else run_id if w == "RUN_ID" else w
            for w in words
        ]
        result = subprocess.run(
            [command, *words[1:]],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, (line, result.stderr)
        if words[1] == "run":
            run_id = result.stdout.split(":")[0].split()[-1]  # "run ID: finished · ..."
    assert (tmp_path / "plan.svg").read_text().lstrip().startswith("<?xml")
    assert (tmp_path / "out" / "report.html").exists()
    assert run_id is not None


def test_the_streaming_command_runs_offline(tmp_path):
    """The "Plans that run while they stream" command, at a hundred times the README's pace."""
    block = next(code for lang, code in BLOCKS if lang == "bash" and "tps=" in code)
    words = shlex.split(block.replace("\\\n", " "))
    assert words[:3] == ["orchestra-nb", "run", "--goal"]
    pace = "tps=40&first_token=0.5"
    assert any(pace in w for w in words)
    words = [w.replace(pace, "tps=4000&first_token=0.005") for w in words]
    (tmp_path / "notebooks").symlink_to(ROOT / "notebooks")  # "in the repository's folder"
    binary = Path(sys.executable).parent / "orchestra-nb"
    command = str(binary) if binary.exists() else shutil.which("orchestra-nb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env.update(PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [command, *words[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "finished · 9/9 done" in result.stdout
