"""How long a big plan takes to draw and to recolour, in a real JupyterLab in Chromium.

For random DAGs of 100, 500 and 1,000 tasks: the graphviz layout in the kernel
(``render_svg``), the time the browser takes to insert that SVG and index its
nodes, and the time to recolour every node when all statuses change at once
(what a run does, at most ten times a second). Browser times come from the
widget itself (``performance.now()`` around its draw and recolour handlers).

    python bench/widget.py [--sizes 100 500 1000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, random_dag, table

sys.path.insert(0, str(ROOT))

from orchestra_nb._render import render_svg
from tests.support.jupyter_server import JupyterLab, chromium_page, write_notebook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    layout = {}
    for n in args.sizes:
        graph = random_dag(n, window=30, max_parents=2)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            render_svg(graph)
            times.append(time.perf_counter() - started)
        layout[n] = statistics.median(times)

    import inspect

    setup = "from typing import Any\nfrom orchestra_nb.jupyter._widget import DagWidget\n\n"
    setup += inspect.getsource(random_dag)
    cells = [setup]
    for n in args.sizes:
        cells.append(
            f"w{n} = DagWidget(random_dag({n}, window=30, max_parents=2), title='{n} tasks')\nw{n}"
        )
    cells.append("def recolour(w, status):\n    w.statuses = dict.fromkeys(w.graph.tasks, status)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_notebook(root / "w.ipynb", cells)
        lab = JupyterLab(root).start()
        try:
            with chromium_page() as page:
                page.goto(lab.notebook_url("w.ipynb"))
                page.wait_for_selector(
                    ".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=90_000
                )
                page.locator(".jp-Cell").nth(0).click()
                for _ in range(len(cells)):
                    page.keyboard.press("Shift+Enter")
                    time.sleep(0.2)
                roots = page.locator(".onb-root")
                for i, n in enumerate(args.sizes):
                    page.wait_for_function(
                        "([i, n]) => document.querySelectorAll('.onb-root')[i]"
                        "?.querySelectorAll('g.node').length === n",
                        arg=[i, n],
                        timeout=120_000,
                    )
                    draw = float(roots.nth(i).get_attribute("data-draw-ms"))
                    recolours = []
                    for k in range(args.repeats):
                        status = ["running", "done"][k % 2]
                        page.locator(".jp-Cell").last.locator(".jp-InputArea-editor").click()
                        page.keyboard.type(f"recolour(w{n}, '{status}')")
                        page.keyboard.press("Shift+Enter")
                        page.wait_for_function(
                            "([i, s, n]) => document.querySelectorAll('.onb-root')[i]"
                            ".querySelectorAll(`g.node[data-status=${s}]`).length === n",
                            arg=[i, status, n],
                            timeout=60_000,
                        )
                        recolours.append(float(roots.nth(i).get_attribute("data-recolour-ms")))
                    rows.append([n, layout[n] * 1000, draw, statistics.median(recolours)])
        finally:
            lab.stop()
    print(
        table(
            ["tasks", "layout (dot) ms", "browser draw ms", "recolour all ms (median)"],
            rows,
            title="DAG widget in JupyterLab + headless Chromium",
        )
    )


if __name__ == "__main__":
    main()
