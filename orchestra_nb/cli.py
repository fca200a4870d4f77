"""The ``orchestra-nb`` command: plan a goal, draw a plan, run it, resume it, write its report.

Each subcommand is a thin wrapper over the library; user errors print one line
on stderr and exit with status 2, never a traceback. ``run`` exits 1 when some
task failed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import ConfigError, OrchestraError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestra-nb",
        description="Plan a goal into a task graph with an LLM, run it, cache every result.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="ask the LLM to break GOAL into a plan; print its JSON")
    plan.add_argument("goal", help="what the plan should achieve")
    _llm_options(plan)
    _function_options(plan)
    plan.add_argument("--max-tasks", type=int, default=12, help="most subtasks allowed")
    plan.add_argument("--attempts", type=int, default=3, help="answers to try before giving up")
    plan.add_argument("-o", "--output", type=Path, help="write the plan here instead of stdout")

    render = sub.add_parser("render", help="draw a plan (or a recorded run) as SVG")
    render.add_argument("plan", nargs="?", type=Path, help="a plan JSON file")
    render.add_argument("--run", dest="run_id", help="draw this recorded run, coloured by status")
    render.add_argument("--store", help="store URL holding the run")
    render.add_argument("-o", "--output", type=Path, help="SVG file to write (default: stdout)")

    run = sub.add_parser("run", help="run a plan (or plan GOAL first), with a progress bar")
    run.add_argument("plan", nargs="?", type=Path, help="a plan JSON file")
    run.add_argument("--goal", help="plan this goal with the LLM first, then run it")
    _llm_options(run)
    _function_options(run)
    _run_options(run)
    run.add_argument("--max-tasks", type=int, default=12, help="most subtasks when planning")
    run.add_argument("--run-id", help="id for the run (default: time-based)")
    run.add_argument("--no-cache", action="store_true", help="recompute every task")

    resume = sub.add_parser("resume", help="finish a recorded run that was interrupted")
    resume.add_argument("run_id")
    _llm_options(resume)
    _function_options(resume)
    resume.add_argument("--store", help="store URL holding the run")
    resume.add_argument("--out", type=Path, help="write the report and results to this folder")

    report = sub.add_parser("report", help="write a recorded run's report, results and plan")
    report.add_argument("run_id")
    report.add_argument("--store", help="store URL holding the run")
    report.add_argument("-o", "--out", type=Path, default=Path("report"), help="folder to write")

    runs = sub.add_parser("runs", help="list recorded runs, newest first")
    runs.add_argument("--store", help="store URL")
    runs.add_argument("--limit", type=int, default=20)
    return parser


def _llm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm",
        help="replay:PATH (offline recordings), record:PATH, openai[:MODEL], ollama:MODEL; "
        "default: OPENAI_API_KEY / OPENAI_BASE_URL from the environment",
    )
    parser.add_argument("--model", help="model name (default: ORCHESTRA_MODEL or gpt-4o-mini)")


def _function_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--functions",
        action="append",
        type=Path,
        default=[],
        metavar="FILE.py",
        help="a Python file whose @task_function functions python tasks may use (repeatable)",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", help="result store URL (default: sqlite:///.orchestra/results.db)"
    )
    parser.add_argument("--max-workers", type=int, default=5, help="tasks running at once")
    parser.add_argument("--mode", choices=("pipeline", "parallel", "dag"), default="dag")
    parser.add_argument("--retries", type=int, default=0, help="extra attempts per failing task")
    parser.add_argument("--timeout", type=float, help="seconds a task may take")
    parser.add_argument("--out", type=Path, help="write the report and results to this folder")


def _make_llm(args: argparse.Namespace) -> Any:
    from .llm import llm_from_spec

    return llm_from_spec(args.llm, model=args.model)


def _load_functions(files: Sequence[Path]) -> dict[str, str]:
    """Import each file so its @task_function decorators register; name -> first doc line."""
    from ._actions import registered_functions

    for file in files:
        if not file.is_file():
            raise ConfigError(f"--functions {file}: no such file")
        spec = importlib.util.spec_from_file_location(f"_orchestra_functions_{file.stem}", file)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        sys.path.insert(0, str(file.parent.resolve()))
        spec.loader.exec_module(module)
    return {name: entry.summary for name, entry in registered_functions().items()}


async def _plan(args: argparse.Namespace) -> int:
    from ._decompose import decompose

    functions = _load_functions(args.functions)
    graph = await decompose(
        args.goal,
        llm=_make_llm(args),
        max_tasks=args.max_tasks,
        max_attempts=args.attempts,
        functions=functions or None,
    )
    if args.output:
        graph.save(args.output)
        print(f"wrote {len(graph)} tasks to {args.output}", file=sys.stderr)
    else:
        print(json.dumps(graph.to_plan(), indent=2, ensure_ascii=False))
    return 0


async def _render(args: argparse.Namespace) -> int:
    from ._plan import TaskGraph
    from ._render import render_svg
    from .engine import rollback

    if args.run_id:
        old = await rollback(args.run_id, store=args.store)
        svg = render_svg(old.graph, old.status)
    elif args.plan:
        svg = render_svg(TaskGraph.load(args.plan))
    else:
        raise ConfigError("render needs a plan file or --run RUN_ID")
    if args.output:
        args.output.write_text(svg, encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(svg)
    return 0


async def _run(args: argparse.Namespace) -> int:
    from ._decompose import decompose
    from ._plan import TaskGraph
    from .engine import start

    functions = _load_functions(args.functions)
    llm = None
    if args.plan and args.goal:
        raise ConfigError("give a plan file or --goal, not both")
    if args.plan:
        graph = TaskGraph.load(args.plan)
        if any(t.kind == "llm" for t in graph.tasks.values()):
            llm = _make_llm(args)
    elif args.goal:
        llm = _make_llm(args)
        print(f"planning: {args.goal}", file=sys.stderr)
        graph = await decompose(
            args.goal, llm=llm, max_tasks=args.max_tasks, functions=functions or None
        )
        print(f"planned {len(graph)} tasks", file=sys.stderr)
    else:
        raise ConfigError("run needs a plan file or --goal GOAL")
    run = await start(
        graph,
        llm=llm,
        store=args.store,
        max_workers=args.max_workers,
        mode=args.mode,
        retries=args.retries,
        timeout=args.timeout,
        refresh=args.no_cache,
        run_id=args.run_id,
        progress=True,
    )
    return _finish(run, args.out)


async def _resume(args: argparse.Namespace) -> int:
    from .engine import resume

    _load_functions(args.functions)
    llm = _make_llm(args) if args.llm else None
    options: dict[str, Any] = {"progress": True}
    if llm is not None:
        options["llm"] = llm
    run = await resume(args.run_id, store=args.store, **options)
    return _finish(run, args.out)


async def _report(args: argparse.Namespace) -> int:
    from ._export import export_run
    from .engine import rollback

    old = await rollback(args.run_id, store=args.store)
    written = export_run(old, args.out)
    print(f"report: {written['report.html']}")
    print(f"markdown: {written['report.md']}")
    return 0


async def _runs(args: argparse.Namespace) -> int:
    import datetime

    from .engine import history

    for r in await history(args.store, limit=args.limit):
        when = datetime.datetime.fromtimestamp(r.get("created") or r["updated"])
        goal = " ".join(str(r.get("goal") or "").split())[:60]
        print(
            f"{r['run_id']}  {r.get('state', '?'):<9}  {r.get('tasks', '?'):>5} tasks  "
            f"{when:%Y-%m-%d %H:%M:%S}  {goal}"
        )
    return 0


def _finish(run: Any, out: Path | None) -> int:
    from ._export import export_run

    print(f"run {run.id}: {run.state} · {run.progress()}")
    for tid, error in run.errors.items():
        if run.status.get(tid) == "failed":
            print(f"  failed {tid}: {error}")
    if out is not None:
        written = export_run(run, out)
        print(f"report: {written['report.html']}")
        print(f"markdown: {written['report.md']}")
    return 0 if run.ok else 1


_COMMANDS = {
    "plan": _plan,
    "render": _render,
    "run": _run,
    "resume": _resume,
    "report": _report,
    "runs": _runs,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_COMMANDS[args.command](args))
    except OrchestraError as exc:
        print(f"orchestra-nb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("orchestra-nb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
