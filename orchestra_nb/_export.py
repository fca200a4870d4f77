"""Writing a finished run to files: the report, every result, and the plan as SVG.

Used by ``orchestra-nb run --out DIR`` and ``orchestra-nb report``. The report is
the result of the plan's final task when that is text (the usual case: a
``report`` or LLM task that compiles the others); otherwise one is assembled
from every result. ``report.html`` is the same Markdown rendered (raw HTML in
LLM answers escaped) with the plan drawn above it, so one file opens anywhere.

A run may come from a shared store, so nothing in it names a file by itself:

* only tasks of the run's plan get a result file (a plan's ids are checked when
  it is built), and every path is checked to lie inside ``results/`` before
  anything is written — a record naming anything else is refused whole;
* the file of task ``ID`` is ``results/ID`` plus an extension chosen by the
  value (``.txt``, ``.md``, ``.json``...), appended and never replacing part of
  the id, so ``summary`` and ``summary.txt`` get ``summary.txt`` and
  ``summary.txt.txt``; ids that only differ in case, and Windows device names
  (``con``, ``nul``...), get ``~`` and a hash of the id before the extension, so
  no two tasks share a file on any file system;
* files are written to a temporary name and renamed into place, so a symlink
  planted where a result goes is replaced, never followed (and a ``results``
  folder that links elsewhere is refused).

When the LLM's answers were replayed from a recording (no model ran), both
reports say so at the top, name the file, and call the token counts replayed:
a reader must never mistake example answers for a model's work. Both end with
an appendix of tokens and cost per task and in total (``cost_appendix``).

A run whose plan changed while it ran (replanned after a failure, or edited by a
person before approving a step) ends its report with an appendix listing every
revision: why, the tasks added, removed and changed, and its outcome.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import html
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._actions import assemble_report
from ._errors import UnsafeDataError
from ._values import Image, Markdown

if TYPE_CHECKING:
    from .engine import Run

_SUFFIX = {"image/png": ".png", "image/svg+xml": ".svg", "image/jpeg": ".jpg", "image/gif": ".gif"}
# names Windows keeps for devices, whatever the extension
_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{port}{n}" for port in ("com", "lpt") for n in "123456789"]
)


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


def answers_source(run: Run) -> dict[str, str] | None:
    """Where the run's LLM answers came from (``describe_llm``), or None if not known.

    A live run asks its LLM; a run loaded from the store carries what its record says.
    """
    return run.llm_source


def replay_notice(run: Run) -> str | None:
    """One Markdown paragraph saying the answers were replayed (None for a live model)."""
    source = answers_source(run)
    if not source or source.get("kind") not in ("replay", "record"):
        return None
    path = source.get("path", "a recording")
    note = f": {source['note'].rstrip('.')}" if source.get("note") else ""
    if source["kind"] == "replay":
        return (
            f"**Replayed answers — no model ran.** The LLM's answers were replayed from "
            f"`{path}`{note}. Token counts are the recording's, replayed."
        )
    return (
        f"**Partly replayed answers.** Answers recorded in `{path}` were replayed{note}; "
        f"their token counts are the recording's. The others came from "
        f"{source.get('model') or 'the model'} and were added to the recording."
    )


def cost_appendix(run: Run) -> str | None:
    """The report's appendix: tokens and cost of each task that asked the model, and the
    total (None when no task did). Replayed answers are called replayed: their counts are
    the recording's and their cost what a live model would have charged, not money spent."""
    from ._cost import current_prices, format_usd
    from .llm import Usage

    tasks = run.graph.tasks
    usage = run.usage_by_task
    rows = [tid for tid in tasks if tid in usage or (
        tasks[tid].kind == "llm" and run.status.get(tid) == "cached")]  # fmt: skip
    if not rows:
        return None
    source = answers_source(run) or {}
    model = source.get("model") or None
    budget = run.options.budget
    prices = current_prices(budget.prices if budget is not None else None)
    replayed = source.get("kind") in ("replay", "record")
    lines = [
        "## Appendix: tokens and cost" + (" (replayed)" if replayed else ""),
        "",
        "| task | prompt tokens | output tokens | cost |",
        "|---|---:|---:|---:|",
    ]
    priced = prices.lookup(model) is not None
    total = Usage()
    for tid in rows:
        name = _cell(tasks[tid].name)
        spent = usage.get(tid)
        if spent is None:
            lines.append(f"| {name} (`{tid}`) | cached | cached | $0 |")
            continue
        total = total + spent
        cost = format_usd(prices.cost(model, spent)) if priced else "—"
        lines.append(
            f"| {name} (`{tid}`) | {spent.prompt_tokens:,} | {spent.completion_tokens:,} | {cost} |"
        )
    total_cost = format_usd(prices.cost(model, total)) if priced else "—"
    lines.append(
        f"| **total** | **{total.prompt_tokens:,}** | **{total.completion_tokens:,}** | "
        f"**{total_cost}** |"
    )
    lines.append("")
    if not priced:
        lines.append(f"No price is known for model {_cell(str(model))!r}, so no cost is shown.")
    else:
        lines.append(f"Prices: {_cell(prices.describe(model))}.")
    if replayed:
        lines.append(
            "Replayed — no model ran: the token counts are the recording's"
            + (", and the cost is what they would have cost, not money spent." if priced else ".")
        )
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text for one Markdown table cell (a name may come from a model)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def export_run(run: Run, directory: str | Path) -> dict[str, Path]:
    """Write report.md, report.html, plan.svg and results/<task>.<ext>; return their paths.

    ``UnsafeDataError`` (before anything is written) when the run holds a result
    for something that is not a task of its plan — a tampered run record.
    """
    from ._render import dot_available, render_svg

    out = Path(directory)
    results = out / "results"
    stems = result_stems(run.graph.tasks)
    strangers = [tid for tid in run.results if tid not in stems]
    if strangers:
        shown = ", ".join(repr(t) for t in strangers[:3])
        raise UnsafeDataError(
            f"run {run.id!r} holds results for {shown}, which are not tasks of its plan "
            "(a tampered run record?); refusing to write its files"
        )
    results.mkdir(parents=True, exist_ok=True)
    inside = results.resolve()
    if inside.parent != out.resolve():
        raise UnsafeDataError(f"{results} links out of {out}; refusing to write through it")
    written: dict[str, Path] = {}
    for tid, value in run.results.items():
        suffix, write = _file_of(value)
        name = stems[tid] + suffix
        path = results / name
        if not _plain_name(name) or path.parent.resolve() != inside:
            # cannot happen for a plan's ids (they are checked when a plan is built): kept
            # so that no later change to ids can turn one into a path
            raise UnsafeDataError(f"the result file of task {tid!r} would be outside {results}")
        _write_atomic(path, write)
        written[f"results/{tid}"] = path
    report = final_report(run)
    notice = replay_notice(run)
    if notice:
        report = f"> {notice}\n\n{report}"
    for appendix in (revision_appendix(run), cost_appendix(run)):
        if appendix:
            report = f"{report.rstrip()}\n\n{appendix}"
    _write_atomic(out / "report.md", _text(report))
    written["report.md"] = out / "report.md"
    svg = render_svg(run.graph, run.status, legend=True) if dot_available() else ""
    if svg:
        _write_atomic(out / "plan.svg", _text(svg))
        written["plan.svg"] = out / "plan.svg"
    _write_atomic(out / "report.html", _text(_html(run, report, svg)))
    written["report.html"] = out / "report.html"
    return written


_SOURCES = {"replan": "replanned after a failure", "edit": "edited by a person"}
_MARKDOWN_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]{}<>#|!~"})


def revision_appendix(run: Run) -> str:
    """The report's appendix on how the plan changed while it ran ("" when it did not).

    Reasons and details come from errors and LLM answers: they are shown as plain
    text on one line each (Markdown characters escaped)."""
    revisions = run.revisions
    if not revisions:
        return ""
    names = {tid: t.name for tid, t in run.graph.tasks.items()}
    lines = ["---", "", "## Appendix: revisions of the plan", ""]
    for r in revisions:
        source = _SOURCES.get(r.source, _plain(r.source))
        outcome = _plain(r.outcome) + (f": {_plain(r.detail)}" if r.detail else "")
        lines.append(f"**Revision {r.number}** ({source}) — {outcome}")
        lines.append("")
        lines.append(f"- reason: {_plain(r.reason)}")
        for label, ids in (("added", r.added), ("removed", r.removed), ("changed", r.changed)):
            shown = ", ".join(_task_ref(tid, names) for tid in ids) or "none"
            lines.append(f"- {label}: {shown}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _task_ref(tid: str, names: dict[str, str]) -> str:
    name = names.get(tid)
    ref = f"`{tid}`" if "`" not in tid else _plain(tid)
    return f"{ref} ({_plain(name)})" if name and name != tid else ref


def _plain(text: str, limit: int = 500) -> str:
    """Text from an error or an LLM answer as plain Markdown text on one line."""
    from ._text import shorten

    return shorten(text, limit).translate(_MARKDOWN_SPECIAL)


def result_stems(ids: Iterable[str]) -> dict[str, str]:
    """The file name, before its extension, of each task's result: the id itself, or the
    id, ``~`` and a hash when the id alone could clash on some file system (ids that
    differ only in case, Windows device names). Ids never contain ``~``, so a hashed
    name never equals a plain one."""
    ids = list(ids)
    folded = collections.Counter(tid.casefold() for tid in ids)
    stems = {}
    for tid in ids:
        clash = folded[tid.casefold()] > 1 or tid.split(".", 1)[0].casefold() in _DEVICES
        if clash:
            digest = hashlib.blake2b(tid.encode(), digest_size=8).hexdigest()
            stems[tid] = f"{tid}~{digest}"
        else:
            stems[tid] = tid
    return stems


def _plain_name(name: str) -> bool:
    """A file name, not a path: no separators, not '.' or '..', no NUL."""
    separators = {os.sep, os.altsep or os.sep, "\0"}
    return name not in ("", ".", "..") and not any(c in name for c in separators)


def _file_of(value: Any) -> tuple[str, Callable[[Path], None]]:
    """The extension a result's file gets (exactly one dot in each, which keeps names
    distinct) and how to write it."""
    if isinstance(value, Image):
        return _SUFFIX.get(value.mime, ".img"), lambda p: p.write_bytes(value.data)
    if isinstance(value, Markdown):
        return ".md", _text(str(value))
    if isinstance(value, str):
        return ".txt", _text(value)
    if isinstance(value, bytes | bytearray):
        return ".bin", lambda p: p.write_bytes(bytes(value))
    if type(value).__module__.startswith("pandas") and hasattr(value, "to_csv"):
        return ".csv", lambda p: value.to_csv(p)
    return ".json", _text(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _text(text: str) -> Callable[[Path], None]:
    return lambda p: p.write_text(text, encoding="utf-8")


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Write beside ``path``, then rename over it: whatever is at ``path`` (a symlink
    included) is replaced, never written through."""
    tmp = path.with_name(f".writing-{secrets.token_hex(8)}-{path.name}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # new, never a link
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.5; color: #1f2937; }
img { max-width: 100%; }
table { border-collapse: collapse; }
td, th { border: 1px solid #d1d5db; padding: 0.2rem 0.6rem; }
.plan { overflow-x: auto; border: 1px solid #e5e7eb; border-radius: 6px; padding: 0.5rem; }
.meta { color: #6b7280; font-size: 0.9rem; }
blockquote { margin: 1rem 0; padding: 0.5rem 1rem; border-left: 4px solid #d97706;
             background: #fffbeb; }
"""


def _html(run: Run, report: str, svg: str) -> str:
    from ._markdown import markdown_html

    title = html.escape(run.graph.goal or "Report")
    progress = str(run.progress())
    if replay_notice(run) and run.usage.total_tokens:
        progress = progress.replace(" tokens", " replayed tokens")
    progress = html.escape(progress)
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
