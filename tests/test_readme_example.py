"""The README's notebook example works exactly as written, in a fresh kernel and a clean folder.

The cells are read from README.md itself (its "In a notebook" code blocks: from the one
that loads the extension to the first ``%%orchestrate`` cell), so the test follows the
README when it changes. The kernel starts in an empty folder holding only what a fresh
clone has at the path the example names (its recording); nothing is imported first and
no model is configured: planning, the run and the report replay offline.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_cells() -> list[str]:
    """The example's cells, in order, as a reader would type them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b.strip() for b in re.findall(r"^```[\w-]*\n(.*?)^```", text, re.S | re.M)]
    start = next((i for i, b in enumerate(blocks) if "%load_ext orchestra_nb" in b), None)
    assert start is not None, "README.md has no notebook example (%load_ext orchestra_nb)"
    cells: list[str] = []
    for block in blocks[start:]:
        lines: list[str] = []
        for line in block.splitlines():
            if line.startswith("%%") and lines:  # a cell magic starts a cell of its own
                cells.append("\n".join(lines))
                lines = []
            lines.append(line)
        cells.append("\n".join(lines))
        if "%%orchestrate" in block:
            return cells
    raise AssertionError("README.md's notebook example has no %%orchestrate cell")


def run_cell(client, code: str) -> str:
    """Execute ``code``; return its stdout. Any error (a UsageError too) fails the test."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict) -> None:
        content = msg["content"]
        if msg["msg_type"] == "stream":
            (out if content["name"] == "stdout" else errors).append(content["text"])
        elif msg["msg_type"] == "error":
            errors.append(f"{content['ename']}: {content['evalue']}")

    reply = client.execute_interactive(code, timeout=120, output_hook=hook)
    assert reply["content"]["status"] == "ok" and not errors, (code, errors)
    return "".join(out)


@pytest.mark.timeout(240)
def test_readme_notebook_example_runs_as_written(tmp_path):
    from jupyter_client.manager import KernelManager

    cells = readme_cells()
    names = re.findall(r"replay:([^\s\"'?]+)", "\n".join(cells))
    assert names, "the README's example names no recording to replay: it would need a model"
    for name in names:  # what a fresh clone has at that path, and nothing else
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "ORCHESTRA_", "AZURE_OPENAI_"))
    }
    env["PYTHONPATH"] = str(ROOT)  # the package itself, as an installed one would be
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(cwd=str(tmp_path), env=env)
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        for cell in cells:
            run_cell(client, cell)
        name = re.search(r"--name[ =](\w+)", cells[-1])
        report = name.group(1) if name else "orchestration"
        out = run_cell(
            client,
            f"import sys\nrun = await {report}\n"
            "print(run.state, sorted(set(run.status.values())), len(run.status))\n"
            "print('market_research' in sys.modules)\n"
            f"print({report}.report.splitlines()[0])",
        )
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    state, imported, title = out.strip().splitlines()
    assert state == "finished ['done'] 6"  # the plan made without Python functions
    assert imported == "False"
    assert title == "# Solid-state batteries for EV makers"
