"""A real JupyterLab in headless Chromium: plan offline, inspect, edit through the UI, run.

Screenshots are kept in artifacts/screenshots/ (what each shows is in the file name).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest

import orchestra_nb as onb
from orchestra_nb import ReplayLLM, decompose
from orchestra_nb.llm import ScriptedLLM
from tests.support.jupyter_server import JupyterLab, chromium_page, run_cell, write_notebook

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
GOAL = "Write a market research report on solid-state batteries"
MAKERS_DOC = "Compare the makers on cost and energy density."
MAKERS = {"QuantumScape": {"wh_per_kg": 400, "usd_per_kwh": 140}, "Solid Power": {"wh_per_kg": 390}}
PLAN_ANSWER = (
    "Here is a plan:\n```json\n"
    + json.dumps(
        {
            "subtasks": [
                {
                    "id": "task_1",
                    "name": "Market size",
                    "description": "Estimate the market size by 2030",
                    "dependencies": [],
                    "estimated_time": 10,
                    "kind": "llm",
                },
                {
                    "id": "task_2",
                    "name": "Compare makers",
                    "description": MAKERS_DOC,
                    "dependencies": [],
                    "estimated_time": 5,
                    "kind": "python",
                    "function": "compare_makers",
                },
                {
                    "id": "task_3",
                    "name": "Write report",
                    "description": "Write the final report",
                    "dependencies": ["task_1", "task_2"],
                    "estimated_time": 15,
                    "kind": "llm",
                },
            ]
        },
        indent=2,
    )
    + "\n```"
)
NOTEBOOK = [
    "%load_ext orchestra_nb",
    f'''import time
import orchestra_nb as onb


@onb.task_function
def compare_makers():
    """{MAKERS_DOC}"""
    time.sleep(2)  # slow enough to be seen running
    return {MAKERS!r}''',
    "%%orchestrate --name report --llm replay:recording.json --store sqlite:///results.db"
    f" --run --wait\n{GOAL}",
    'print("deps:", report.graph.tasks["task_2"].dependencies)',
]


def answer(messages):
    prompt = messages[-1]["content"]
    if "## Step: Market size" in prompt:
        return "## Market size\n\nAbout **$8 bn** by 2030 (illustrative)."
    if "## Step: Write report" in prompt:
        return "# Solid-state batteries\n\nThe market grows fast; QuantumScape leads on density."
    raise AssertionError(f"unexpected prompt: {prompt[:80]}")


def record(path: Path) -> None:
    """Answers for every prompt the notebook will send, in the exact shape a model returns."""

    def compare_makers():
        return MAKERS

    compare_makers.__doc__ = MAKERS_DOC

    async def go():
        planner = ReplayLLM(path, record=ScriptedLLM([PLAN_ANSWER], model="demo-model"))
        graph = await decompose(GOAL, llm=planner, functions={"compare_makers": MAKERS_DOC})
        worker = ReplayLLM(path, record=ScriptedLLM(answer, model="demo-model"))
        run = await onb.run(
            graph, llm=worker, functions={"compare_makers": compare_makers}, store="memory://"
        )
        assert run.ok, run.errors

    asyncio.run(go())


@pytest.fixture
def lab(tmp_path):
    record(tmp_path / "recording.json")
    write_notebook(tmp_path / "demo.ipynb", NOTEBOOK)
    server = JupyterLab(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def all_nodes(page, statuses: tuple[str, ...], count: int, timeout: float = 60_000) -> None:
    page.wait_for_function(
        """([statuses, count]) => {
            const nodes = [...document.querySelectorAll('.onb-root g.node')];
            return nodes.length === count && nodes.every(g => statuses.includes(g.dataset.status));
        }""",
        arg=[list(statuses), count],
        timeout=timeout,
    )


@pytest.mark.timeout(300)
def test_plan_inspect_edit_and_run_in_jupyterlab(lab):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        try:
            drive(page, lab)
        except Exception:
            page.screenshot(path=str(SHOTS / "failure.png"))
            shutil.copy(lab.log, SHOTS.parent / "jupyter.log")
            raise
    shutil.copy(lab.log, SHOTS.parent / "jupyter.log")


def drive(page, lab) -> None:
    page.goto(lab.notebook_url("demo.ipynb"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    for index in range(3):  # the extension, the function, the %%orchestrate cell
        run_cell(page, index)

    # the widget appears and the first run (planning from the recording, then the run) ends
    page.wait_for_selector(".onb-root g.node", timeout=90_000)
    all_nodes(page, ("done",), 3)
    page.screenshot(path=str(SHOTS / "1-widget-shown-after-run.png"))

    # clicking a node shows its description and its result in the inspector
    page.locator("#node-task_1").click()
    page.wait_for_selector("[data-testid=inspector-description]")
    assert page.inner_text("[data-testid=inspector-title]") == "Market size"
    assert (
        page.inner_text("[data-testid=inspector-description]") == "Estimate the market size by 2030"
    )
    page.wait_for_selector("[data-testid=result] strong")
    assert "$8 bn" in page.inner_text("[data-testid=result]")
    page.screenshot(path=str(SHOTS / "2-node-selected-inspector.png"))

    # add a dependency through the UI: select task_2, "Depends on…", click task_1
    page.locator("#node-task_2").click()
    page.click("[data-testid=depends-on]")
    page.locator("#node-task_1").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=message]').textContent"
        ".includes(\"'task_2' now depends on 'task_1'\")"
    )
    page.wait_for_selector(".onb-root g.node.stale")  # edited task and its descendant
    page.screenshot(path=str(SHOTS / "3-dependency-added-stale.png"))

    # the Python side sees the edit
    cell = run_cell(page, 3)
    output = cell.locator(".jp-OutputArea-output")
    output.wait_for(timeout=30_000)
    assert output.inner_text().strip() == "deps: ('task_1',)"

    # press Run: the edited task runs again (seen running), the rest comes from the cache
    page.click("[data-testid=run]")
    page.wait_for_selector("#node-task_2[data-status=running]", timeout=30_000)
    page.screenshot(path=str(SHOTS / "4-mid-run.png"))
    all_nodes(page, ("done", "cached"), 3)
    statuses = page.eval_on_selector_all(
        ".onb-root g.node",
        "els => Object.fromEntries(els.map(g => [g.dataset.task, g.dataset.status]))",
    )
    assert statuses == {"task_1": "cached", "task_2": "done", "task_3": "done"}
    page.locator("#node-task_3").click()
    page.wait_for_selector("[data-testid=result] h1")
    assert page.inner_text("[data-testid=result] h1") == "Solid-state batteries"
    assert "3/3 done" in page.inner_text("[data-testid=progress]")
    page.screenshot(path=str(SHOTS / "5-all-done-report.png"))
