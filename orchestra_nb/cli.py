"""The ``orchestra-nb`` command: plan a goal, draw a plan, run it, resume it, write its report.

Each subcommand is a thin wrapper over the library. What a user can get wrong —
a missing, unreadable, empty or broken file, a directory where a file belongs, a
bad flag or value, an unknown run or store — ends with ONE line on stderr and a
non-zero exit status, never a traceback (``--debug`` shows it):

====  ==========================================================================
0     done (``run``/``resume``: every task finished)
1     ``run``/``resume``: some task failed; or an internal error (a bug: one line,
      ``--debug`` for the traceback)
2     bad input or configuration, unknown run, unreachable store
130   interrupted (Ctrl-C): the run's honest counts and the command to resume it
====  ==========================================================================

Read-only commands (``runs``, ``report``, ``render --run``, ``estimate``, ``run
--dry-run``) never create a store.
Everything printed passes a filter that shows control characters as ``\\u001b``
escapes: goals, task ids and error texts come from LLM answers and shared
stores, and must not be able to drive the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ._errors import OrchestraError, PlanError, StoreUnavailableError
from ._text import printable, terminal_safe

if TYPE_CHECKING:
    from ._plan import TaskGraph
    from .engine import Run

PROG = "orchestra-nb"


class UsageError(Exception):
    """Bad command-line input; its message is the whole (one-line) explanation."""


# --- the parser --------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse prints usage + error: we want one line
        raise UsageError(f"{message} (see: {self.prog} --help)")


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: X)" only where there is a default worth showing."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        default = action.default
        if default is None or default is False or default == [] or not action.help:
            return action.help
        return super()._get_help_string(action)


def _at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, not {value}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text}")
    return value


def _budget(text: str) -> Any:
    from ._budget import Budget
    from ._errors import ConfigError

    try:
        return Budget.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("orchestra-nb")
    except PackageNotFoundError:  # running from a source tree that is not installed
        from . import __version__

        return __version__


def _parser() -> _Parser:
    common = _Parser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,  # so a subcommand does not reset the top-level flag
        help="show the full traceback of an error",
    )
    parser = _Parser(
        prog=PROG,
        description="Plan a goal into a task graph with an LLM, run it, cache every result.",
        epilog=f"'{PROG} COMMAND --help' shows a command's options.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, text: str) -> _Parser:
        return sub.add_parser(
            name, help=text, description=text, parents=[common], formatter_class=_Formatter
        )

    plan = command("plan", "ask the LLM to break GOAL into a plan; print its JSON")
    plan.add_argument("goal", help="what the plan should achieve")
    _llm_options(plan)
    _function_options(plan)
    plan.add_argument(
        "--max-tasks", metavar="N", type=_at_least(1), default=12, help="most subtasks allowed"
    )
    plan.add_argument(
        "--attempts",
        metavar="N",
        type=_at_least(1),
        default=3,
        help="answers to try before giving up",
    )
    plan.add_argument("-o", "--output", type=Path, help="write the plan here instead of stdout")

    render = command("render", "draw a plan (or a recorded run) as SVG")
    render.add_argument("plan", nargs="?", type=Path, help="a plan JSON file")
    render.add_argument("--run", dest="run_id", help="draw this recorded run, coloured by status")
    _store_option(render, "the store holding the run")
    render.add_argument(
        "--legend",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="draw a key to the colours and shapes beside the plan",
    )
    render.add_argument("-o", "--output", type=Path, help="SVG file to write (default: stdout)")

    run = command("run", "run a plan (or plan GOAL first), with a progress bar")
    run.add_argument("plan", nargs="?", type=Path, help="a plan JSON file")
    run.add_argument("--goal", help="plan this goal with the LLM first, then run it")
    _llm_options(run)
    _function_options(run)
    _run_options(run)
    run.add_argument(
        "--max-tasks",
        metavar="N",
        type=_at_least(1),
        default=12,
        help="most subtasks when planning",
    )
    run.add_argument("--run-id", help="id for the run (default: time-based)")
    run.add_argument("--no-cache", action="store_true", help="recompute every task")
    run.add_argument(
        "--batch",
        action="store_true",
        help="send LLM tasks through the provider's Batch API: cheaper, answered within 24 h; "
        "tasks ready together go in one batch, and resume waits for batches already sent",
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print what the run would cost (tokens, dollars, time per task) and stop: no "
        "task runs and no store is created (with --goal, the plan is still asked for)",
    )
    run.add_argument(
        "--stream",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="with --goal: start tasks while the model is still writing the plan "
        "(--no-stream: plan first, then run)",
    )
    _cost_options(run)
    _gate_options(run)

    resume = command("resume", "finish a recorded run that was interrupted")
    resume.add_argument("run_id", help="the run's id (see: orchestra-nb runs)")
    _llm_options(resume)
    _function_options(resume)
    _store_option(resume, "the store holding the run")
    resume.add_argument(
        "--max-workers",
        metavar="N",
        type=_at_least(1),
        help="tasks running at once (default: as recorded)",
    )
    resume.add_argument(
        "--batch",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="LLM tasks through the provider's Batch API, or (--no-batch) as plain requests "
        "(default: as recorded)",
    )
    resume.add_argument(
        "--out", metavar="DIR", type=Path, help="write the report and results to this folder"
    )
    _cost_options(resume, resuming=True)

    estimate = command(
        "estimate", "print what running a plan would cost: tokens, dollars and time per task"
    )
    estimate.add_argument("plan", type=Path, help="a plan JSON file")
    _llm_options(estimate)
    _function_options(estimate)
    _store_option(estimate, "where cached results are looked up (nothing is created)")
    estimate.add_argument(
        "--max-workers", metavar="N", type=_at_least(1), default=5, help="tasks running at once"
    )
    estimate.add_argument(
        "--mode", choices=("pipeline", "parallel", "dag"), default="dag", help="as for run"
    )
    estimate.add_argument("--no-cache", action="store_true", help="as if nothing were cached")
    _prices_option(estimate)

    for verb, text in (
        ("approve", "approve a task awaiting approval in a run, running or stopped"),
        ("reject", "reject a task awaiting approval (it and its descendants are skipped)"),
    ):
        decide = command(verb, text)
        decide.add_argument("run_id", help="the run's id (see: orchestra-nb runs)")
        decide.add_argument("task", help="the id of the task awaiting approval")
        _store_option(decide, "the store holding the run")
        if verb == "reject":
            decide.add_argument("--reason", help="why (kept in the run's record)")

    report = command("report", "write a recorded run's report, results and plan")
    report.add_argument("run_id", help="the run's id (see: orchestra-nb runs)")
    _store_option(report, "the store holding the run")
    report.add_argument(
        "-o", "--out", metavar="DIR", type=Path, default=Path("report"), help="folder to write"
    )

    runs = command("runs", "list recorded runs, newest first")
    _store_option(runs, "the store to list")
    runs.add_argument(
        "--limit", metavar="N", type=_at_least(1), default=20, help="most runs to list"
    )
    return parser


def _cost_options(parser: argparse.ArgumentParser, *, resuming: bool = False) -> None:
    parser.add_argument(
        "--budget",
        metavar="AMOUNT",
        type=_budget,
        help="most the run may spend on LLM tasks: dollars (1.50), tokens (200k tokens) or "
        "both ('$1.50, 200k tokens'); past it no LLM task starts and the run can be resumed"
        + (" (default: as recorded; counts what the run spent before)" if resuming else ""),
    )
    parser.add_argument(
        "--log", metavar="FILE", type=Path, help="append every event to FILE, one JSON per line"
    )
    _prices_option(parser)


def _prices_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prices",
        metavar="FILE.json",
        type=Path,
        help='model prices in USD per 1M tokens, {"MODEL": {"input": .., "output": ..}}, '
        "over the shipped table (default: ORCHESTRA_PRICES)",
    )


def _store_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--store",
        metavar="URL",
        help=f"{what}: sqlite:///FILE.db, redis://HOST:6379/0 or memory:// "
        "(default: ORCHESTRA_STORE or sqlite:///.orchestra/results.db)",
    )


def _llm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm",
        metavar="SPEC",
        help="replay:PATH (answers from a recording, offline), record:PATH (replay, and ask the "
        "model for what the recording lacks), openai[:MODEL], ollama:MODEL "
        "(default: OPENAI_API_KEY / OPENAI_BASE_URL from the environment)",
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


def _gate_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--approve",
        metavar="WHAT",
        help="tasks that wait for a person before they start: all, a kind (llm, python, "
        "report) or task ids separated by commas; with a terminal attached you are asked, "
        "otherwise the command to approve from another terminal is printed",
    )
    parser.add_argument(
        "--approval-timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        help="reject a task (or revised plan) nobody decided on within this time",
    )
    parser.add_argument(
        "--on-failure",
        choices=("skip", "replan"),
        default="skip",
        help="when a task fails for good: skip its descendants, or ask the LLM for a revised "
        "plan of what is not finished and go on with it",
    )
    parser.add_argument(
        "--max-replans",
        metavar="N",
        type=_at_least(0),
        default=2,
        help="most revised plans a run goes on with (--on-failure replan)",
    )


def _run_options(parser: argparse.ArgumentParser) -> None:
    _store_option(parser, "where results are cached and the run recorded")
    parser.add_argument(
        "--max-workers", metavar="N", type=_at_least(1), default=5, help="tasks running at once"
    )
    parser.add_argument(
        "--mode",
        choices=("pipeline", "parallel", "dag"),
        default="dag",
        help="dag: each task starts when its dependencies are done, up to --max-workers at "
        "once; pipeline: one task at a time in dependency order; parallel: all at once, "
        "for plans without dependencies",
    )
    parser.add_argument(
        "--retries",
        metavar="N",
        type=_at_least(0),
        default=0,
        help="extra attempts per failing task",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive_seconds,
        help="seconds a task may take (default: no limit)",
    )
    parser.add_argument(
        "--out", metavar="DIR", type=Path, help="write the report and results to this folder"
    )


# --- reading what the user named ---------------------------------------------------------------


def _read_text(path: Path, what: str) -> str:
    """A file's text, or a UsageError saying in one line why it cannot be had."""
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file")
    if path.is_dir():
        raise UsageError(f"{what} {path}: is a directory, not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text (byte {exc.start})") from None


def _read_plan(path: Path) -> TaskGraph:
    from ._plan import TaskGraph

    text = _read_text(path, "plan file")
    if not text.strip():
        raise UsageError(f"plan file {path}: the file is empty (a plan is JSON: "
                         '{"subtasks": [{"id": ..., "dependencies": [...]}, ...]})')  # fmt: skip
    try:
        return TaskGraph.from_plan(text)
    except PlanError as exc:  # the parser speaks of LLM answers; this one is a file
        message = re.sub(r"^the answer\b", "the file", str(exc))
        raise UsageError(f"plan file {path}: {message}") from None
    except RecursionError:
        raise UsageError(f"plan file {path}: nested too deeply to be a plan") from None


def _load_functions(files: Sequence[Path]) -> dict[str, str]:
    """Import each file so its @task_function decorators register; name -> first doc line."""
    from ._actions import registered_functions

    for file in files:
        _read_text(file, "--functions")  # exists, is a file, readable
        spec = importlib.util.spec_from_file_location(f"_orchestra_functions_{file.stem}", file)
        if spec is None or spec.loader is None:
            raise UsageError(f"--functions {file}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        sys.path.insert(0, str(file.parent.resolve()))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: say where it broke, in one line
            raise UsageError(f"--functions {file}: {_describe(exc)}") from exc
    return {name: entry.summary for name, entry in registered_functions().items()}


_SQLITE_HEADER = b"SQLite format 3\x00"


def _existing_store(url: str | None, *, listing: bool = False) -> str:
    """The store URL for a command that only reads: a SQLite file must already exist.

    Opening a SQLite store creates its file; a command that only looks must not
    leave one behind (``runs`` in an empty folder used to create
    ``.orchestra/results.db``).
    """
    from .store import default_url, scheme_of, sqlite_path

    chosen = url or default_url()
    if scheme_of(chosen) == "sqlite":
        path = sqlite_path(chosen)
        if not path.exists():
            if listing and url is None:
                raise _NothingYet(f"no runs yet: {path} does not exist (nothing has run here)")
            hint = "" if url else " (pass --store with the URL the run used)"
            raise UsageError(f"no store at {path}: no run was recorded there{hint}")
        _check_sqlite_file(chosen, path)
    return chosen


def _check_sqlite_file(url: str, path: Path) -> None:
    """Refuse a path that is not a SQLite database before SQLite opens it: SQLite
    silently turns a file shorter than its header into a new database."""
    from .store import redact

    if path.is_dir():
        raise UsageError(f"store {redact(url)}: {path} is a directory, not a database")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with path.open("rb") as fh:
            header = fh.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise UsageError(f"store {redact(url)}: cannot read {path} ({exc.strerror})") from None
    if header != _SQLITE_HEADER:
        raise UsageError(f"store {redact(url)}: {path} is not a SQLite database")


def _writable_store(url: str | None) -> str | None:
    """The store URL for ``run``: a SQLite file may be new, but must be a database if not."""
    from .store import default_url, scheme_of, sqlite_path

    chosen = url or default_url()
    if scheme_of(chosen) == "sqlite":
        _check_sqlite_file(chosen, sqlite_path(chosen))
    return url


class _NothingYet(Exception):
    """Not an error: there is simply nothing to show (exit status 0)."""


def _check_goal(goal: str) -> None:
    if not goal.strip():
        raise UsageError("the goal is empty: say what the plan should achieve")


def _check_output_folder(out: Path | None) -> None:
    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")


def _write_output(path: Path, text: str) -> None:
    if path.is_dir():
        raise UsageError(f"-o {path}: is a directory; name a file")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"-o {path}: cannot write it ({exc.strerror or exc})") from None


# --- the commands ------------------------------------------------------------------------------


@dataclass
class _Session:
    """What an interrupted command needs to say what happened."""

    args: argparse.Namespace
    run: Run | None = None
    planning: bool = False
    replayed: bool = False
    bars: list[Any] = field(default_factory=list)
    consoles: list[Any] = field(default_factory=list)


def _make_llm(args: argparse.Namespace) -> Any:
    from .llm import llm_from_spec

    return llm_from_spec(args.llm, model=args.model)


def _is_replay(llm: Any) -> bool:
    from .llm import describe_llm

    source = describe_llm(llm)
    return bool(source) and source.get("kind") == "replay"


async def _plan(session: _Session) -> int:
    from ._decompose import decompose

    args = session.args
    _check_goal(args.goal)
    functions = _load_functions(args.functions)
    graph = await decompose(
        args.goal,
        llm=_make_llm(args),
        max_tasks=args.max_tasks,
        max_attempts=args.attempts,
        functions=functions or None,
    )
    if args.output:
        _write_output(args.output, graph.to_json() + "\n")
        _say(f"wrote {len(graph)} tasks to {args.output}", sys.stderr)
    else:
        _say(json.dumps(graph.to_plan(), indent=2, ensure_ascii=False))
    return 0


async def _render(session: _Session) -> int:
    from ._render import render_svg
    from .engine import rollback

    args = session.args
    if args.run_id and args.plan:
        raise UsageError("render draws a plan file or --run RUN_ID, not both")
    if args.run_id:
        old = await rollback(args.run_id, store=_existing_store(args.store))
        svg = render_svg(old.graph, old.status, legend=args.legend)
    elif args.plan:
        svg = render_svg(_read_plan(args.plan), legend=args.legend)
    else:
        raise UsageError("render needs a plan file or --run RUN_ID")
    if args.output:
        _write_output(args.output, svg)
        _say(f"wrote {args.output}", sys.stderr)
    else:
        sys.stdout.write(svg)
    return 0


async def _run(session: _Session) -> int:
    from ._decompose import decompose
    from .engine import start

    args = session.args
    if args.plan and args.goal:
        raise UsageError("give a plan file or --goal, not both")
    if not args.plan and args.goal is None:
        raise UsageError("run needs a plan file or --goal GOAL")
    _check_output_folder(args.out)
    if args.goal is not None:
        _check_goal(args.goal)
    graph = _read_plan(args.plan) if args.plan else None
    approve = _approve_option(args.approve, graph)
    functions = _load_functions(args.functions)
    llm = None
    if graph is not None:
        if args.on_failure == "replan" or any(t.kind == "llm" for t in graph.tasks.values()):
            llm = _make_llm(args)
    else:
        llm = _make_llm(args)
        session.replayed = _is_replay(llm)
        if sys.stderr.isatty():  # a live model may take a while: say what is going on
            _say(f"planning: {printable(args.goal, one_line=True)}", sys.stderr)
        session.planning = True
        if args.stream and not args.dry_run:  # a dry run prices the whole plan: plan first
            _use_prices(args)
            return await _plan_and_run(session, llm)
        graph = await decompose(
            args.goal, llm=llm, max_tasks=args.max_tasks, functions=functions or None
        )
        session.planning = False
        _say(f"planned {len(graph)} tasks", sys.stderr)
    session.replayed = _is_replay(llm)
    _use_prices(args)
    if args.dry_run:
        return await _print_estimate(
            graph,
            llm=llm,
            store=_writable_store(args.store),
            functions=None,
            max_workers=args.max_workers,
            mode=args.mode,
            refresh=args.no_cache,
            budget=args.budget,
        )
    run = start(
        graph,
        llm=llm,
        store=_writable_store(args.store),
        max_workers=args.max_workers,
        mode=args.mode,
        retries=args.retries,
        timeout=args.timeout,
        refresh=args.no_cache,
        run_id=args.run_id,
        progress=False,  # ours counts honestly when interrupted (see _progress.py)
        llm_batch=args.batch,
        budget=args.budget,
        log=args.log,
        approve=approve,
        approval_timeout=args.approval_timeout,
        on_failure=args.on_failure,
        max_replans=args.max_replans,
    )
    return await _follow(session, run)


def _use_prices(args: argparse.Namespace) -> None:
    """``--prices FILE``: the file's prices over the shipped table, for this command."""
    if getattr(args, "prices", None) is not None:
        from ._cost import set_prices
        from ._errors import ConfigError

        try:
            set_prices(args.prices)
        except ConfigError as exc:
            raise UsageError(f"--prices {exc}") from None


async def _print_estimate(graph: TaskGraph, *, budget: Any = None, **options: Any) -> int:
    from ._estimate import estimate

    est = await estimate(graph, **options)
    _say(est.table())
    line = f"estimate: {est}"
    if budget is not None:
        line += f" (budget {budget})"
    _say(line)
    return 0


async def _estimate(session: _Session) -> int:
    args = session.args
    graph = _read_plan(args.plan)
    _load_functions(args.functions)
    llm = _make_llm(args) if any(t.kind == "llm" for t in graph.tasks.values()) else None
    _use_prices(args)
    return await _print_estimate(
        graph,
        llm=llm,
        store=_writable_store(args.store),
        functions=None,
        max_workers=args.max_workers,
        mode=args.mode,
        refresh=args.no_cache,
    )


async def _plan_and_run(session: _Session, llm: Any) -> int:
    """Plan and run at once: tasks start while the model writes the plan, and each joins
    the progress bar's total as it is added."""
    from ._streaming import plan_and_run

    args = session.args
    running = plan_and_run(
        args.goal,
        llm=llm,
        store=_writable_store(args.store),
        max_workers=args.max_workers,
        mode=args.mode,
        retries=args.retries,
        timeout=args.timeout,
        refresh=args.no_cache,
        run_id=args.run_id,
        max_tasks=args.max_tasks,
        budget=args.budget,
        log=args.log,
        llm_batch=args.batch,
        approve=_approve_option(args.approve, None),
        approval_timeout=args.approval_timeout,
        on_failure=args.on_failure,
        max_replans=args.max_replans,
        progress=False,
        on_run=lambda run: _watch(session, run),
    )
    return await _until_done(session, running)


def _approve_option(text: str | None, graph: TaskGraph | None) -> str | list[str] | None:
    """``--approve`` read, and checked against the plan when there is one already."""
    from .engine import parse_approve

    if text is None:
        return None
    try:
        approve = parse_approve(text)
    except OrchestraError as exc:
        raise UsageError(f"--approve: {exc}") from None
    if graph is not None and isinstance(approve, list):
        unknown = [tid for tid in approve if tid not in graph]
        if unknown:
            raise UsageError(f"--approve names unknown task(s): {', '.join(unknown)}")
    return approve


async def _decide(session: _Session) -> int:
    """``approve`` / ``reject``: write the decision into the run's record."""
    from .engine import record_decision
    from .store import open_store

    args = session.args
    approved = args.command == "approve"
    store = open_store(_existing_store(args.store))
    try:
        await record_decision(
            store, args.run_id, args.task, approved=approved, reason=getattr(args, "reason", None)
        )
    finally:
        await store.close()
    verb = "approved" if approved else "rejected"
    run_id, task = printable(args.run_id, one_line=True), printable(args.task, one_line=True)
    _say(
        f"{verb} {task} of run {run_id}: a running run acts on it within a second or two; "
        f"a stopped one when resumed"
    )
    return 0


async def _resume(session: _Session) -> int:
    from .engine import start_resume

    args = session.args
    _check_output_folder(args.out)
    store = _existing_store(args.store)
    _load_functions(args.functions)
    options: dict[str, Any] = {"progress": False}
    if args.llm:
        options["llm"] = _make_llm(args)
        session.replayed = _is_replay(options["llm"])
    if args.max_workers is not None:
        options["max_workers"] = args.max_workers
    if args.batch is not None:
        options["llm_batch"] = args.batch
    _use_prices(args)
    run = await start_resume(args.run_id, store=store, budget=args.budget, log=args.log, **options)
    return await _follow(session, run)


async def _follow(session: _Session, run: Run) -> int:
    """Show the run's progress until it ends, then its summary (and write its report)."""
    _watch(session, run)
    return await _until_done(session, run)


def _watch(session: _Session, run: Run) -> None:
    """Follow this run from now on (a streamed plan asked for again starts another)."""
    from ._console import RunConsole
    from .engine._progress import ProgressBar

    session.run = run
    bar = ProgressBar(run, tokens_label="replayed tokens" if session.replayed else "tokens")
    session.bars.append(bar)
    session.consoles.append(
        RunConsole(
            run,
            write=bar.write,
            decide_elsewhere=lambda tid: _decide_command(session, tid),
            stdin_fd=_answers_from(run),
            pause=bar.pause,
            resume=bar.resume,
        )
    )


async def _until_done(session: _Session, running: Awaitable[Any]) -> int:
    """Wait for the run, then print its summary; a store that went away says what it cost."""
    try:
        await running
    except StoreUnavailableError as exc:
        run = session.run
        reason = str(exc).split("; ")[0]
        if run is None or not any(s in ("done", "cached") for s in run.status.values()):
            raise UsageError(reason) from None  # nothing ran: the store was never there
        lost = len(run.pending_writes)
        raise UsageError(
            f"{reason}; the run stopped"
            + (f" and {lost} result(s) computed since are lost with this process" if lost else "")
            + f" — when the store is back: {_resume_command(session)}"
        ) from None
    return _finish(session, session.args.out)


async def _report(session: _Session) -> int:
    from ._export import export_run
    from .engine import rollback

    args = session.args
    _check_output_folder(args.out)
    old = await rollback(args.run_id, store=_existing_store(args.store))
    _print_written(export_run(old, args.out))
    return 0


async def _runs(session: _Session) -> int:
    import datetime

    from .engine import history
    from .store import redact

    args = session.args
    store = _existing_store(args.store, listing=True)
    found = await history(store, limit=args.limit)
    if not found:
        _say(f"no runs recorded in {redact(store)}", sys.stderr)
    for r in found:
        try:
            stamp = datetime.datetime.fromtimestamp(r.get("created") or r["updated"])
            when = f"{stamp:%Y-%m-%d %H:%M:%S}"
        except (TypeError, ValueError, OverflowError, OSError, KeyError):
            when = "?"
        goal = printable(r.get("goal") or "", one_line=True)
        goal = goal if len(goal) <= 60 else goal[:59] + "…"
        _say(
            f"{printable(r.get('run_id', '?'), one_line=True)}  "
            f"{printable(r.get('state', '?'), one_line=True):<9}  "
            f"{printable(r.get('tasks', '?'), one_line=True):>5} tasks  {when}  {goal}"
        )
    return 0


def _summary(run: Run, replayed: bool) -> str:
    """The run's counts in one line; tokens called replayed when no model ran."""
    line = str(run.progress())
    if replayed:
        line = line.replace(" tokens", " replayed tokens")
    return f"run {printable(run.id, one_line=True)}: {run.state} · {line}"


def _finish(session: _Session, out: Path | None) -> int:
    from ._export import export_run

    run = session.run
    assert run is not None
    _say(_summary(run, session.replayed))
    if run.error:
        _say(f"  {printable(cli_hint(run.error), one_line=True)}")
    rejected = {e.task_id for e in run.events if e.kind == "rejected"}
    failures: dict[tuple[str, str], list[str]] = {}  # one line per outcome and reason
    for tid, error in run.errors.items():
        status = run.status.get(tid)
        if status == "failed" or (status == "skipped" and tid in rejected):
            what = "failed" if status == "failed" else "not run"
            reason = printable(cli_hint(error), one_line=True)
            failures.setdefault((what, reason), []).append(tid)
    for (what, reason), tids in failures.items():
        shown = ", ".join(printable(tid, one_line=True) for tid in tids[:3])
        more = f" and {len(tids) - 3} more" if len(tids) > 3 else ""
        _say(f"  {what} {shown}{more}: {reason}")
    if run.revisions:
        applied = sum(r.outcome == "applied" for r in run.revisions)
        _say(f"  plan revised {applied} time(s) ({len(run.revisions)} revision(s) asked for)")
    if out is not None:
        _print_written(export_run(run, out))
    if not run.ok:
        _say(_resume_hint(session), sys.stderr)
    return 0 if run.ok else 1


def _print_written(written: dict[str, Path]) -> None:
    """Every file a report wrote: the report first, then the plan, then the results folder."""
    _say(f"report: {written['report.html']}")
    _say(f"markdown: {written['report.md']}")
    if "plan.svg" in written:
        _say(f"plan: {written['plan.svg']}")
    results = [path for name, path in written.items() if name.startswith("results/")]
    if results:
        _say(f"results: {results[0].parent}{'/'} ({len(results)} files)")


def _answers_from(run: Run) -> int | None:
    """The terminal to ask a person at (stdin, when it is one and the run has gates)."""
    gated = run.gates is not None or any(t.approval for t in run.graph.tasks.values())
    stdin = sys.stdin
    try:
        if gated and stdin is not None and stdin.isatty():
            return stdin.fileno()
    except (OSError, ValueError):  # a replaced stdin without a file descriptor
        pass
    return None


def _decide_command(session: _Session, task_id: str) -> str:
    """The command that approves ``task_id`` of the session's run from another terminal."""
    import shlex

    from .store import redact, scheme_of

    store = getattr(session.args, "store", None)
    if store and scheme_of(store) == "memory":
        return "none with --store memory:// (no other process sees this run)"
    run_id = session.run.id if session.run is not None else "RUN_ID"
    parts = [PROG, "approve", run_id, task_id]
    if store:
        parts += ["--store", redact(store)]
    return printable(shlex.join(parts), one_line=True)


def _resume_hint(session: _Session) -> str:
    """The line that says how to finish the run (a memory store keeps nothing to resume)."""
    from .store import scheme_of

    store = getattr(session.args, "store", None)
    if store and scheme_of(store) == "memory":
        return "nothing was kept (--store memory://): run it again to finish it"
    run = session.run
    if run is not None and (run.error or "").startswith("budget reached"):
        return f"resume with a larger budget: {_resume_command(session)} --budget AMOUNT"
    return f"resume with: {_resume_command(session)}"


def _resume_command(session: _Session) -> str:
    """The command that finishes this run, with the options it needs to find and run it."""
    import shlex

    from .store import redact

    args = session.args
    run_id = session.run.id if session.run is not None else "RUN_ID"
    parts = [PROG, "resume", run_id]
    if getattr(args, "store", None):
        parts += ["--store", redact(args.store)]
    for file in getattr(args, "functions", []) or []:
        parts += ["--functions", str(file)]
    if getattr(args, "llm", None):
        parts += ["--llm", args.llm]
    if getattr(args, "out", None):
        parts += ["--out", str(args.out)]
    if getattr(args, "prices", None):
        parts += ["--prices", str(args.prices)]
    return printable(shlex.join(parts), one_line=True)


def _interrupted(session: _Session) -> int:
    for console in session.consoles:
        console.close()
    for bar in session.bars:
        bar.close()
    run = session.run
    if run is None:
        what = "while planning, before anything ran" if session.planning else ""
        _say(f"{PROG}: interrupted {what}".rstrip(), sys.stderr)
        return 130
    _say(f"{PROG}: interrupted — {_summary(run, session.replayed)}", sys.stderr)
    _say(_resume_hint(session), sys.stderr)
    return 130


_COMMANDS = {
    "plan": _plan,
    "render": _render,
    "run": _run,
    "resume": _resume,
    "report": _report,
    "runs": _runs,
    "estimate": _estimate,
    "approve": _decide,
    "reject": _decide,
}

# Library hints are written for Python callers; the CLI says the same with its flags.
_CLI_HINTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\bllm='([^']*)'"), r"--llm \1"),
    (re.compile(r"\bmode='([^']*)'"), r"--mode \1"),
    (re.compile(r"\bstore='([^']*)'"), r"--store \1"),
    (re.compile(r" \(llm_batch=False\)"), ""),
    (
        re.compile(r"register (them|functions|[\w, ]+?) with @orchestra_nb\.task_function"),
        r"load the file that defines \1 with --functions FILE.py",
    ),
    (
        re.compile(r"import the module that registers them first"),
        "load the file that defines them with --functions FILE.py",
    ),
]


def cli_hint(message: str) -> str:
    """A library error message with its Python-syntax hints in the CLI's syntax."""
    for pattern, replacement in _CLI_HINTS:
        message = pattern.sub(replacement, message)
    return message


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if isinstance(exc, OrchestraError | UsageError) and text:
        return text
    return f"{name}: {text}" if text else name


def _say(text: str, file: IO[str] | None = None) -> None:
    print(text, file=file if file is not None else sys.stdout)


def _error(message: str) -> None:
    _say(f"{PROG}: error: {printable(message, one_line=True)}", sys.stderr)


class _TerminalSafe:
    """A text stream that shows control characters as escapes instead of passing them on.

    Wraps stdout and stderr while a command runs: whatever path a goal or an error
    text takes to the terminal (a message, a log line, a library warning), its
    escape sequences arrive as visible text.
    """

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(terminal_safe(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the exit status (see the module docstring)."""
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _TerminalSafe(stdout), _TerminalSafe(stderr)  # type: ignore[assignment]
    try:
        return _main(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _main(argv: Sequence[str] | None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _error(str(exc))
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    session = _Session(args)
    try:
        return asyncio.run(_COMMANDS[args.command](session))
    except KeyboardInterrupt:
        return _interrupted(session)
    except _NothingYet as exc:
        _say(str(exc), sys.stderr)
        return 0
    except (UsageError, OrchestraError) as exc:
        if args.debug:
            _print_traceback()
        _error(cli_hint(_describe(exc)))
        return 2
    except OSError as exc:  # a file or socket the user named, in a place not checked above
        if args.debug:
            _print_traceback()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _error(f"{where}{exc.strerror or _describe(exc)}")
        return 2
    except Exception as exc:
        if args.debug:
            _print_traceback()
        _error(f"internal error: {_describe(exc)} (run with --debug for the traceback)")
        return 1


def _print_traceback() -> None:
    import traceback

    traceback.print_exc()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
