"""The market-research demo in a real JupyterLab, in headless Chromium.

Plans with the offline replay LLM, watches the run, inspects a node, adds a
dependency through the UI, checks the Python side saw it, and runs again.
Screenshots are kept in artifacts/screenshots/ (each file name says what it shows).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.jupyter_server import JupyterLab, chromium_page, run_cell, write_notebook

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "notebooks"
SHOTS = ROOT / "artifacts" / "screenshots"
GOAL = "Write a market research report on solid-state batteries for EV makers"
NOTEBOOK = [
    "%load_ext orchestra_nb",
    "import market_research  # registers the demo's Python steps",
    '%%orchestrate --name report --llm "replay:recordings/market_research.json?latency=0.6"'
    f" --store sqlite:///results.db --run --wait\n{GOAL}",
    'print("deps:", report.graph.tasks["task_3"].dependencies)',
]


@pytest.fixture
def lab(tmp_path):
    shutil.copy(DEMO / "market_research.py", tmp_path)
    shutil.copytree(DEMO / "data", tmp_path / "data")
    shutil.copytree(DEMO / "recordings", tmp_path / "recordings")
    write_notebook(tmp_path / "demo.ipynb", NOTEBOOK)
    server = JupyterLab(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


def statuses(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        ".onb-root g.node",
        "els => Object.fromEntries(els.map(g => [g.dataset.task, g.dataset.status]))",
    )


def wait_until_every_node(page, allowed: tuple[str, ...], count: int) -> None:
    page.wait_for_function(
        """([allowed, count]) => {
            const nodes = [...document.querySelectorAll('.onb-root g.node')];
            return nodes.length === count && nodes.every(g => allowed.includes(g.dataset.status));
        }""",
        arg=[list(allowed), count],
        timeout=90_000,
    )


@pytest.mark.timeout(300)
def test_market_research_in_jupyterlab(lab):
    SHOTS.mkdir(parents=True, exist_ok=True)
    with chromium_page() as page:
        try:
            drive(page, lab)
        except Exception:
            page.screenshot(path=str(SHOTS / "failure.png"))
            raise
        finally:
            shutil.copy(lab.log, SHOTS.parent / "jupyter.log")


def drive(page, lab) -> None:
    page.goto(lab.notebook_url("demo.ipynb"))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    run_cell(page, 0)
    run_cell(page, 1)

    # plan (from the recording) and run; the widget shows the run live
    run_cell(page, 2, wait=False)
    page.wait_for_function(
        """() => {
            const nodes = [...document.querySelectorAll('.onb-root g.node')];
            return nodes.length === 9 && nodes.some(g => g.dataset.status === 'running')
                && nodes.some(g => g.dataset.status === 'done');
        }""",
        timeout=90_000,
    )
    page.screenshot(path=str(SHOTS / "1-planned-and-running.png"))
    page.locator(".onb-root").screenshot(path=str(SHOTS / "widget-mid-run.png"))
    wait_until_every_node(page, ("done",), 9)
    page.screenshot(path=str(SHOTS / "2-run-finished.png"))

    # clicking a node shows its description and its result in the inspector
    page.locator("#node-task_4").click()
    page.wait_for_selector("[data-testid=result] h2")
    assert page.inner_text("[data-testid=inspector-title]") == "Market sizing"
    assert page.inner_text("[data-testid=inspector-description]").startswith("From the data")
    assert page.inner_text("[data-testid=result] h2") == "Market size and growth"
    page.screenshot(path=str(SHOTS / "3-node-inspected.png"))

    # zoom in and out, and back to fitting the panel
    svg = page.locator(".onb-root [data-testid=graph] svg")
    fitted = svg.bounding_box()["width"]
    page.click("[data-testid=zoom-in]")
    page.click("[data-testid=zoom-in]")
    assert svg.bounding_box()["width"] > fitted * 1.5
    page.click("[data-testid=zoom-out]")
    assert fitted * 1.1 < svg.bounding_box()["width"] < fitted * 1.4
    page.click("[data-testid=zoom-fit]")
    assert svg.bounding_box()["width"] == pytest.approx(fitted, abs=1)

    # add a dependency through the UI: the competitor chart now also waits for the market chart
    page.locator("#node-task_3").click()
    page.click("[data-testid=depends-on]")
    page.locator("#node-task_2").click()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=message]').textContent"
        ".includes(\"'task_3' now depends on 'task_2'\")"
    )
    page.wait_for_selector("#node-task_3.stale")
    page.screenshot(path=str(SHOTS / "4-dependency-added-stale.png"))

    # the Python side sees the edit
    cell = run_cell(page, 3)
    assert cell.locator(".jp-OutputArea-output").inner_text().strip() == (
        "deps: ('task_1', 'task_2')"
    )

    # press Run: the edited task and its descendant run, the rest comes from the cache
    page.click("[data-testid=run]")
    # the previous run's statuses already satisfy the waits below: first see the new run start
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=progress]').textContent.includes('9/9 done')"
    )
    wait_until_every_node(page, ("done", "cached"), 9)
    page.wait_for_function(
        "() => document.querySelector('[data-testid=progress]').textContent.includes('9/9 done')"
    )
    final = statuses(page)
    assert {tid for tid, s in final.items() if s == "done"} == {"task_3", "task_9"}
    page.locator("#node-task_9").click()
    page.wait_for_selector("[data-testid=result] h1")
    assert page.inner_text("[data-testid=result] h1") == "Solid-state batteries for EV makers"
    assert page.locator("[data-testid=result] img").count() == 2  # both charts, inline
    page.screenshot(path=str(SHOTS / "5-rerun-report.png"))
