"""How fast a plan appears in a real JupyterLab, how much it costs the kernel and the notebook.

For plans of 10, 100 and 500 tasks (generated), the 1,738-task Montage workflow
(tests/data) and a generated 5,000-task plan, a user's cell ``%orchestrate --from
plan --name p`` is run in JupyterLab in headless Chromium, in a fresh kernel each
time, and we measure, from the moment the cell is run:

- **cell returns**: its prompt shows ``[n]``;
- **first picture**: the first frame showing the widget (its placeholder, or the plan);
- **full picture**: the first frame with every node drawn where ``dot`` put it;
- **largest stall** of the kernel's event loop, from a probe task started in an earlier
  cell that sleeps 5 ms at a time (the cell's own run time counts: it blocks the loop);
- **saved notebook** size on disk after saving from the UI, with the widget state
  saved too (the ``saveState`` setting on: the larger case), and its outputs alone.

The peer, computed in this process for the same plans: drawing the plan the way a
plain graphviz user would, one static SVG from ``dot`` embedded in the notebook (its
time and size). Browser times come from the page's own clock (the widget stamps
``data-first-picture`` / ``data-full-picture``). Medians over ``--repeats`` runs.

    python bench/widget.py [--sizes 10 100 500 1738 5000] [--repeats 3]

Targets (1,738 tasks): cell returns <= 0.3 s, first picture <= 1 s, full picture
<= 3 s, no stall > 100 ms, saved notebook <= 1 MB; 500 drawn nodes <= 0.5 s to the
full picture (the ``500*`` row: every task drawn, none grouped).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _common import ROOT, table

sys.path.insert(0, str(ROOT))

from tests.support.jupyter_server import JupyterLab, chromium_page, run_cell, write_notebook

HERE = Path(__file__).resolve().parent
MONTAGE = ROOT / "tests" / "data" / "montage-chameleon-2mass-05d-001.json"
RECORDING = ROOT / "notebooks" / "recordings" / "market_research.json"
PEER_TIMEOUT = 180  # seconds a static SVG of one plan may take before we stop waiting

PROBE = """\
import asyncio, time
stalls = []
async def probe():
    last = time.perf_counter()
    while True:
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        stalls.append(now - last - 0.005)
        last = now
probe_task = asyncio.ensure_future(probe())"""
STOP = 'probe_task.cancel()\nprint(f"stall {max(stalls) * 1000:.1f} samples {len(stalls)}")'

# start the clock, then run the selected cell (the clock and the command in one JS turn)
START = """(i) => {
    const cell = document.querySelectorAll('.jp-Notebook .jp-Cell')[i];
    const prompt = () => cell.querySelector('.jp-InputArea-prompt')?.textContent ?? '';
    window.onbBench = { t0: Date.now() };
    const watch = new MutationObserver(() => {
        if (!window.onbBench.returned && /\\[\\d+\\]/.test(prompt())) {
            window.onbBench.returned = Date.now();
            watch.disconnect();
        }
    });
    watch.observe(cell, { subtree: true, childList: true, characterData: true });
    window.jupyterapp.commands.execute('notebook:run-cell');
}"""


def plan_source(n: int) -> str:
    if n == 1738:
        return f"import json\nplan = json.load(open({str(MONTAGE)!r}))"
    return (
        f"import sys\nsys.path.insert(0, {str(HERE)!r})\nfrom _common import random_dag\n"
        f"plan = random_dag({n}, window=30, max_parents=2)"
    )


def cells(n: int, every_task: bool) -> list[str]:
    show = "%orchestrate --from plan --name p"
    if every_task:  # the same widget with grouping off: every task is a node
        show = (
            "from orchestra_nb import TaskGraph\n"
            "from orchestra_nb.jupyter._widget import DagWidget\n"
            "DagWidget(TaskGraph.from_plan(plan), title='every task', group_above=10**6)"
        )
    setup = (
        "%load_ext orchestra_nb\n"  # tasks of kind llm need an LLM configured to be shown
        f"%config Orchestra.llm = 'replay:{RECORDING}'\n" + plan_source(n)
    )
    return [setup, PROBE, show, STOP]


def peer(n: int) -> tuple[float | None, int | None]:
    """A plain graphviz drawing of the same plan: seconds to make the SVG, its bytes."""
    code = (
        f"import sys, time\nsys.path.insert(0, {str(HERE)!r})\n"
        "from _common import random_dag\nfrom orchestra_nb import TaskGraph\n"
        "from orchestra_nb._render import render_svg\nimport json\n"
        + (
            f"g = TaskGraph.from_plan(json.load(open({str(MONTAGE)!r})))\n"
            if n == 1738
            else f"g = random_dag({n}, window=30, max_parents=2)\n"
        )
        + "t = time.perf_counter(); svg = render_svg(g)\n"
        "print(time.perf_counter() - t, len(svg.encode()))"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=PEER_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        return float("inf"), None  # not done after PEER_TIMEOUT seconds
    seconds, size = done.stdout.split()
    return float(seconds), int(size)


def shut_down_kernels(lab: JupyterLab) -> None:
    """Each run gets a fresh kernel; the finished ones must not compete for the 2 cores."""
    base = f"{lab.url}/api/sessions"
    with urllib.request.urlopen(f"{base}?token={lab.token}") as r:
        sessions = json.load(r)
    for s in sessions:
        req = urllib.request.Request(f"{base}/{s['id']}?token={lab.token}", method="DELETE")
        urllib.request.urlopen(req).close()


def measure(page, lab: JupyterLab, name: str) -> dict[str, float]:
    path = lab.root / name
    page.goto(lab.notebook_url(name))
    page.wait_for_selector(".jp-Notebook", timeout=90_000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000)
    page.wait_for_timeout(1500)  # let the kernel connect before the first cell runs
    run_cell(page, 0)
    run_cell(page, 1)
    page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-InputPrompt").click()
    page.evaluate(START, 2)
    page.wait_for_function("() => window.onbBench.returned", timeout=120_000, polling=20)
    cell = page.locator(".jp-Notebook .jp-Cell").nth(2)
    error = cell.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    if error.count():
        raise RuntimeError(f"the cell failed: {error.first.inner_text()}")
    page.wait_for_function(
        "() => document.querySelector('.onb-root')?.dataset.fullPicture",
        timeout=600_000,
        polling=20,
    )
    got = page.evaluate(
        "() => { const r = document.querySelector('.onb-root'); return {...window.onbBench,"
        " first: +r.dataset.firstPicture, full: +r.dataset.fullPicture,"
        " nodes: r.querySelectorAll('.onb-node').length}; }"
    )
    page.wait_for_timeout(1000)  # what follows the drawing (statuses, resizes) counts too
    out = run_cell(page, 3).locator(".jp-OutputArea-output").inner_text().split()
    stall = float(out[1])
    before = path.stat().st_mtime_ns
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    deadline = time.monotonic() + 60
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    saved = json.loads(path.read_text())
    outputs = sum(len(json.dumps(c.get("outputs", []))) for c in saved["cells"])
    shut_down_kernels(lab)
    t0 = got["t0"]
    return {
        "nodes": got["nodes"],
        "returned": (got["returned"] - t0) / 1000,
        "first": (got["first"] - t0) / 1000,
        "full": (got["full"] - t0) / 1000,
        "stall": stall,
        "saved": path.stat().st_size / 1024,
        "outputs": outputs / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500, 1738, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peer", action="store_true", help="skip the static-SVG peer")
    args = parser.parse_args()

    runs = [(n, False) for n in args.sizes]
    if 500 in args.sizes:
        runs.insert(runs.index((500, False)) + 1, (500, True))
    results: dict[tuple[int, bool], list[dict[str, float]]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        state = root / ".lab-settings" / "@jupyter-widgets" / "jupyterlab-manager"
        state.mkdir(parents=True)
        (state / "plugin.jupyterlab-settings").write_text(json.dumps({"saveState": True}))
        lab = JupyterLab(root).start()
        try:
            with chromium_page() as page:
                for repeat in range(args.repeats):
                    for n, every in runs:
                        name = f"bench-{n}{'-all' if every else ''}-{repeat}.ipynb"
                        write_notebook(root / name, cells(n, every))
                        got = measure(page, lab, name)
                        results[(n, every)].append(got)
                        print(f"  {name}: {got}", file=sys.stderr, flush=True)
        finally:
            lab.stop()

    peers = {} if args.no_peer else {n: peer(n) for n in args.sizes}
    rows = []
    for (n, every), got in results.items():
        med = {k: statistics.median(g[k] for g in got) for k in got[0]}
        svg_s, svg_b = (None, None) if every else peers.get(n, (None, None))
        rows.append([
            f"{n:,}{'*' if every else ''}",
            int(med["nodes"]),
            med["returned"],
            med["first"],
            med["full"],
            med["stall"],
            med["saved"],
            med["outputs"],
            "-" if svg_s is None else (f">{PEER_TIMEOUT}" if svg_b is None else svg_s),
            "-" if svg_b is None else svg_b / 1024,
            "-" if svg_s is None else f"{min(svg_s, PEER_TIMEOUT) / med['full']:.1f}×"
            + ("+" if svg_b is None else ""),
        ])  # fmt: skip
    headers = ["tasks", "nodes drawn", "cell returns s", "first picture s", "full picture s",
               "max stall ms", "saved KB", "outputs KB", "static SVG s", "SVG KB",
               "SVG time / full picture"]  # fmt: skip
    title = f"DAG widget in JupyterLab + headless Chromium (medians of {args.repeats})"
    print(table(headers, rows, title=title))
    print("* every task drawn (grouping off); saved KB includes the widget state")


if __name__ == "__main__":
    main()
