"""Writing a finished run to files: the report, every result, and the plan as SVG.

Used by ``orchestra-nb run --out DIR`` and ``orchestra-nb report``. The report is
the result of the plan's final task when that is text (the usual case: a
``report`` or LLM task that compiles the others); otherwise one is assembled
from every result. ``report.html`` is the same Markdown rendered (raw HTML in
LLM answers escaped) with the plan drawn above it, so one file opens anywhere.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._actions import assemble_report
from ._values import Image, Markdown

if TYPE_CHECKING:
    from .engine import Run

_SUFFIX = {"image/png": ".png", "image/svg+xml": ".svg", "image/jpeg": ".jpg", "image/gif": ".gif"}


def final_report(run: Run) -> str:
    """The run's deliverable as Markdown."""
    sinks = run.graph.sinks()
    if len(sinks) == 1 and isinstance(run.results.get(sinks[0]), str):
        return str(run.results[sinks[0]])
    from ._plan import Task

    everything = Task("report", run.graph.goal or "Results", kind="report")
    names = {tid: t.name for tid, t in run.graph.tasks.items()}
    present = {tid: run.results[tid] for tid in run.graph.topological_order() if tid in run.results}
    return assemble_report(everything, present, names=names, goal=run.graph.goal)


def export_run(run: Run, directory: str | Path) -> dict[str, Path]:
    """Write report.md, report.html, plan.svg and results/<task>.<ext>; return their paths."""
    from ._render import dot_available, render_svg

    out = Path(directory)
    (out / "results").mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for tid, value in run.results.items():
        written[f"results/{tid}"] = _write_result(out / "results" / tid, value)
    report = final_report(run)
    (out / "report.md").write_text(report, encoding="utf-8")
    written["report.md"] = out / "report.md"
    svg = render_svg(run.graph, run.status) if dot_available() else ""
    if svg:
        (out / "plan.svg").write_text(svg, encoding="utf-8")
        written["plan.svg"] = out / "plan.svg"
    (out / "report.html").write_text(_html(run, report, svg), encoding="utf-8")
    written["report.html"] = out / "report.html"
    return written


def _write_result(stem: Path, value: Any) -> Path:
    if isinstance(value, Image):
        path = stem.with_suffix(_SUFFIX.get(value.mime, ".img"))
        path.write_bytes(value.data)
    elif isinstance(value, Markdown):
        path = stem.with_suffix(".md")
        path.write_text(str(value), encoding="utf-8")
    elif isinstance(value, str):
        path = stem.with_suffix(".txt")
        path.write_text(value, encoding="utf-8")
    elif isinstance(value, bytes | bytearray):
        path = stem.with_suffix(".bin")
        path.write_bytes(bytes(value))
    elif type(value).__module__.startswith("pandas") and hasattr(value, "to_csv"):
        path = stem.with_suffix(".csv")
        value.to_csv(path)
    else:
        path = stem.with_suffix(".json")
        path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str), "utf-8")
    return path


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1f2937; }
img { max-width: 100%; }
table { border-collapse: collapse; }
td, th { border: 1px solid #d1d5db; padding: 0.2rem 0.6rem; }
.plan { overflow-x: auto; border: 1px solid #e5e7eb; border-radius: 6px; padding: 0.5rem; }
.meta { color: #6b7280; font-size: 0.9rem; }
"""


def _html(run: Run, report: str, svg: str) -> str:
    from ._markdown import markdown_html

    title = html.escape(run.graph.goal or "Report")
    progress = html.escape(str(run.progress()))
    plan = ""
    if svg:
        encoded = base64.b64encode(svg.encode()).decode()
        plan = (
            f'<details class="plan"><summary>The plan ({len(run.graph)} tasks)</summary>'
            f'<img alt="plan" src="data:image/svg+xml;base64,{encoded}"></details>'
        )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_STYLE}</style></head><body>\n"
        f"<p class='meta'>Run {html.escape(run.id)} · {progress}</p>\n{plan}\n"
        f"{markdown_html(report)}\n</body></html>\n"
    )
