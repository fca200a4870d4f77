"""``%%orchestrate`` and ``%orchestra``: thin magics over the library.

The magic parses its flags (``magic_arguments``, so ``%%orchestrate?`` is help
and a bad flag is a one-line ``UsageError``), fills ``{variables}`` in the cell
from the notebook, checks what can be checked at once (an LLM is configured,
the store answers), then hands the work to an ``Orchestration`` running on the
kernel's loop. Every error a user can cause is a ``UsageError``: IPython shows
it as one line, never a traceback.

Settings are traitlets on the ``Orchestra`` configurable, so ``%config
Orchestra.model = "gpt-4o-mini"`` works like any IPython setting.
"""

from __future__ import annotations

import argparse
import asyncio
import keyword
import re
import shlex
from collections.abc import Mapping
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import (
    MagicArgumentParser,
    argument,
    magic_arguments,
)
from traitlets import Enum, Float, Int, Unicode
from traitlets.config import Configurable

from .._errors import OrchestraError
from ..engine import MODES, parse_approve
from ._nested import call_on_loop, wait
from ._session import Orchestration

_FIELD = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def fill_variables(body: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` with the value of notebook variable ``name``; ``{{`` and ``}}``
    are literal braces.

    Only plain names are filled: no attribute access, indexing, conversions or
    format specs (``string.Formatter`` allows all of those, and a goal pasted from
    elsewhere could reach any secret of the kernel through them), and no names
    starting with ``_`` (IPython's input and output history).
    """

    def fill(match: re.Match[str]) -> str:
        text = match.group(0)
        if text in ("{{", "}}"):
            return text[0]
        name = match.group(1)
        if name is None:
            raise UsageError(
                f"the cell has an unmatched {text!r}: write {text * 2} for a literal brace"
            )
        name = name.strip()
        if not name.isidentifier() or name.startswith("_") or keyword.iskeyword(name):
            shown = name if len(name) <= 40 else name[:39] + "…"
            raise UsageError(
                f"the cell uses {{{shown}}}: only plain {{variable}} names are filled (no "
                "attributes, indexes or formats; write {{ and }} for literal braces)"
            )
        if name not in namespace:
            raise UsageError(f"the cell uses {{{name}}} but no variable {name!r} exists")
        return str(namespace[name])

    return _FIELD.sub(fill, body)


@magics_class
class Orchestra(Magics, Configurable):
    """Settings for %%orchestrate (change them with %config Orchestra.<name> = value)."""

    model = Unicode(
        "", help="Model name for LLM calls (default: ORCHESTRA_MODEL or gpt-4o-mini)."
    ).tag(config=True)
    llm = Unicode(
        "", help="LLM to use: replay:PATH, record:PATH, openai[:MODEL], ollama:MODEL."
    ).tag(config=True)
    store = Unicode("", help="Result store URL (default: sqlite:///.orchestra/results.db).").tag(
        config=True
    )
    max_workers = Int(5, help="Tasks running at once.").tag(config=True)
    mode = Enum(list(MODES), default_value="dag", help="pipeline, parallel or dag.").tag(
        config=True
    )
    retries = Int(0, help="Extra attempts for a failing task.").tag(config=True)
    timeout = Float(None, allow_none=True, help="Seconds a task may take.").tag(config=True)
    max_tasks = Int(12, help="Most subtasks the LLM may plan.").tag(config=True)
    executor = Unicode(
        "",
        help="Where Python tasks run: '' (this kernel), 'local:N' (a Dask LocalCluster), "
        "or a Dask scheduler address such as 'tcp://host:8786'.",
    ).tag(config=True)
    budget = Unicode(
        "",
        help="Most a run may spend on LLM tasks: dollars ('1.50'), tokens ('200k tokens') "
        "or both ('$1.50, 200k tokens'); '' for no limit.",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, config=shell.config if shell is not None else None, **kwargs)
        self.orchestrations: dict[str, Orchestration] = {}
        self._executors: dict[str, Any] = {}  # one per spec, kept for the kernel's life

    # --- %%orchestrate --------------------------------------------------------------------

    @magic_arguments()
    @argument(
        "--name", "-n", default="orchestration", help="variable to bind the plan and its runs to"
    )
    @argument("--run", action="store_true", help="run the plan as soon as it is ready")
    @argument("--wait", action="store_true", help="block the cell until planning (and the run) end")
    @argument(
        "--no-stream",
        action="store_true",
        help="with --run: plan first, then run (by default tasks start while the plan streams)",
    )
    @argument("--max-workers", type=int, help="tasks running at once")
    @argument("--mode", choices=MODES, help="pipeline, parallel or dag")
    @argument("--model", help="model name")
    @argument("--llm", help="replay:PATH, record:PATH, openai[:MODEL] or ollama:MODEL")
    @argument("--store", help="result store URL: memory://, sqlite:///path.db, redis://host:6379/0")
    @argument(
        "--from",
        dest="source",
        metavar="VAR",
        help="use the plan in this variable instead of asking the LLM",
    )
    @argument("--no-cache", action="store_true", help="recompute every task")
    @argument("--max-tasks", type=int, help="most subtasks the LLM may plan")
    @argument("--executor", help="run Python tasks on Dask: local:N or tcp://host:8786")
    @argument(
        "--budget",
        metavar="AMOUNT",
        help="most the run may spend on LLM tasks: dollars (1.50), tokens (200k tokens) or both",
    )
    @argument(
        "--approve",
        metavar="WHAT",
        help="tasks that wait for approval before they start: all, a kind (llm, python, "
        "report) or task ids separated by commas",
    )
    @argument(
        "--on-failure",
        choices=("skip", "replan"),
        help="when a task fails for good: skip its descendants, or replan the rest with the LLM",
    )
    @argument(
        "--max-replans", type=int, help="most revisions a run makes (with --on-failure replan)"
    )
    @line_cell_magic
    def orchestrate(self, line: str, cell: str | None = None) -> None:
        """Plan a goal with an LLM into a task graph, show it as a widget, and run it.

        The cell body is the goal; {variables} are filled from the notebook. As a
        line magic (``%orchestrate --from plan --run``) it shows or runs a plan
        that is already in a variable.
        """
        args = _parse(self.orchestrate, line)
        name = args.name
        if not name.isidentifier():
            raise UsageError(f"--name must be a Python name, not {name!r}")
        body = fill_variables(cell or "", self.shell.user_ns).strip()
        graph = self._graph_from(args.source, goal=body or None) if args.source else None
        if graph is None and not body:
            raise UsageError("the cell is empty: write the goal in it, or use --from VAR")
        options = self._options(args)
        if graph is not None and isinstance(options.get("approve"), list):
            unknown = [tid for tid in options["approve"] if tid not in graph]
            if unknown:
                raise UsageError(f"--approve names unknown task(s): {', '.join(unknown)}")
        replans = options.get("on_failure") == "replan"
        needs_llm = graph is None or replans or any(t.kind == "llm" for t in graph.tasks.values())
        llm = self._llm(args) if needs_llm else None
        store = self._store(args.store)
        orchestration = Orchestration(
            name, goal=body or None, llm=llm, store=store, options=options
        )
        refresh = bool(args.no_cache)
        self.orchestrations[name] = orchestration
        self.shell.user_ns[name] = orchestration

        def begin() -> None:
            if graph is not None:
                orchestration.set_graph(graph)
                if args.run:
                    orchestration.start(refresh=refresh)
            else:
                max_tasks = args.max_tasks or self.max_tasks
                orchestration.plan(
                    body,
                    max_tasks=max_tasks,
                    then_run=args.run,
                    refresh=refresh,
                    stream=not args.no_stream,
                )

        try:
            call_on_loop(begin)  # in a kernel the loop is running already; in a terminal, not
        except OrchestraError as exc:
            raise UsageError(str(exc)) from None
        self._show(orchestration, wait_for_it=args.wait)

    def _show(self, orchestration: Orchestration, *, wait_for_it: bool) -> None:
        """Display the orchestration; with --wait, block and then print how it ended.

        While blocking, only the live widget is shown; the final state is printed
        after. (Updating an output in place is not something every notebook tool
        records, and a notebook's saved outputs must be the ones it produced.)
        """
        from IPython.display import display

        if not wait_for_it:
            display(orchestration)
            return
        display(orchestration.live_view())
        try:
            wait(orchestration.wait(), on_interrupt=orchestration.cancel_all)
        except OrchestraError as exc:
            raise UsageError(str(exc)) from None
        print(orchestration._text())

    def _graph_from(self, variable: str, *, goal: str | None) -> Any:
        from .._plan import TaskGraph

        if variable not in self.shell.user_ns:
            raise UsageError(f"--from {variable}: no variable {variable!r} in the notebook")
        value = self.shell.user_ns[variable]
        try:
            if isinstance(value, TaskGraph):
                graph = TaskGraph.from_plan(value, goal=None)  # a copy: cheap
            else:  # reading a big plan is CPU work: in a thread, the kernel's loop turning
                graph = wait(asyncio.to_thread(TaskGraph.from_plan, value, goal=None))
        except OrchestraError as exc:
            raise UsageError(f"--from {variable}: {exc}") from None
        if goal and not graph.goal:
            graph.goal = goal
        return graph

    def _llm(self, args: argparse.Namespace) -> Any:
        from ..llm import llm_from_spec

        spec = args.llm or self.llm or None
        try:
            return llm_from_spec(spec, model=args.model or self.model or None)
        except OrchestraError as exc:
            raise UsageError(str(exc)) from None

    def _store(self, given: str | None) -> str | None:
        """The store URL to use, checked now so an unreachable store is a one-line error."""
        from ..store import open_store

        url = given or self.store or None
        try:
            store = open_store(url)
        except OrchestraError as exc:
            raise UsageError(str(exc)) from None

        async def check() -> None:
            try:
                await store.ping()
            finally:
                await store.close()

        try:
            wait(check(), timeout=15)
        except OrchestraError as exc:
            raise UsageError(str(exc)) from None
        except TimeoutError:
            raise UsageError(f"the store {store.url} did not answer within 15 s") from None
        return url

    def _options(self, args: argparse.Namespace) -> dict[str, Any]:
        options: dict[str, Any] = {
            "max_workers": self.max_workers if args.max_workers is None else args.max_workers,
            "mode": args.mode or self.mode,
            "retries": self.retries,
        }
        if self.timeout is not None:
            options["timeout"] = self.timeout
        spec = getattr(args, "executor", None) or self.executor
        if spec:
            options["executor"] = self._executor(spec)
        budget = getattr(args, "budget", None) or self.budget
        if budget:
            from .._budget import Budget

            try:
                options["budget"] = Budget.parse(budget)
            except OrchestraError as exc:
                source = "--budget" if getattr(args, "budget", None) else "Orchestra.budget"
                raise UsageError(f"{source}: {exc}") from None
        if options["max_workers"] < 1:
            raise UsageError(f"--max-workers must be at least 1, not {options['max_workers']}")
        if getattr(args, "approve", None) is not None:
            try:
                options["approve"] = parse_approve(args.approve)
            except OrchestraError as exc:
                raise UsageError(f"--approve: {exc}") from None
        if getattr(args, "on_failure", None):
            options["on_failure"] = args.on_failure
        if getattr(args, "max_replans", None) is not None:
            if args.max_replans < 0:
                raise UsageError(f"--max-replans must be at least 0, not {args.max_replans}")
            options["max_replans"] = args.max_replans
        return options

    def _executor(self, spec: str) -> Any:
        from .._dask import DaskExecutor

        if spec not in self._executors:
            if not (spec.startswith("local") or "://" in spec):
                raise UsageError(f"unknown executor {spec!r}: use local:N or tcp://host:8786")
            self._executors[spec] = DaskExecutor(spec)
        return self._executors[spec]

    # --- %orchestra -----------------------------------------------------------------------

    @line_magic
    def orchestra(self, line: str) -> Any:
        """%orchestra status | runs | show NAME | resume RUN_ID | clear-cache | config"""
        args = _orchestra_parser().parse_args(_split(line) or ["status"])
        try:
            return getattr(self, "_cmd_" + args.command.replace("-", "_"))(args)
        except OrchestraError as exc:
            raise UsageError(str(exc)) from None

    def _cmd_status(self, args: argparse.Namespace) -> None:
        if not self.orchestrations:
            print("nothing orchestrated yet in this kernel")
            return
        for name, orch in self.orchestrations.items():
            print(orch._text().split("\n", 1)[0] if name else "")

    def _cmd_runs(self, args: argparse.Namespace) -> None:
        from ..engine import history

        runs = wait(history(args.store or self.store or None, limit=args.limit))
        if not runs:
            print("no runs recorded in this store")
            return
        import datetime

        for r in runs:
            when = datetime.datetime.fromtimestamp(r.get("created") or r["updated"]).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            goal = " ".join(str(r.get("goal") or "").split())[:60]
            state, tasks = r.get("state", "?"), r.get("tasks", "?")
            print(f"{r['run_id']}  {state:<9}  {tasks:>5} tasks  {when}  {goal}")

    def _cmd_show(self, args: argparse.Namespace) -> None:
        from IPython.display import display

        orch = self.orchestrations.get(args.name) or self.shell.user_ns.get(args.name)
        if not isinstance(orch, Orchestration):
            orch = self._from_store(args.name, args.store)
        display(orch)

    def _from_store(self, name: str, store_url: str | None) -> Orchestration:
        """After a kernel restart: the latest run of ``name`` (or the run with that id) as
        the store recorded it, shown again (not live)."""
        if not name.isidentifier() and not name.replace("-", "").isalnum():
            raise UsageError(f"no orchestration named {name!r}")
        store = self._store(store_url)
        record = wait(_latest_record(store, name))
        if record is None:
            raise UsageError(
                f"no orchestration named {name!r} in this kernel, and no run of it in the "
                f"store ({_redacted(store)}): %orchestra runs lists what the store has"
            )
        label = name if name.isidentifier() else f"run_{name.replace('-', '_')}"
        orchestration = Orchestration(label, store=store, options={})
        orchestration.show_record(record)
        self.orchestrations[label] = orchestration
        self.shell.user_ns[label] = orchestration
        return orchestration

    def _cmd_resume(self, args: argparse.Namespace) -> None:
        name = args.name or f"resumed_{args.run_id.replace('-', '_')}"
        if not name.isidentifier():
            raise UsageError(f"--name must be a Python name, not {name!r}")
        store = self._store(args.store)
        if wait(_load_record(store, args.run_id)) is None:
            raise UsageError(
                f"no run {args.run_id!r} in the store {_redacted(store)}: "
                "%orchestra runs lists the runs it has"
            )
        llm = None
        try:
            from ..llm import llm_from_spec

            llm = llm_from_spec(args.llm or self.llm or None, model=self.model or None)
        except OrchestraError:
            llm = None  # a plan of Python tasks needs none; LLM tasks will say what is missing
        orchestration = Orchestration(name, llm=llm, store=store, options={})
        self.orchestrations[name] = orchestration
        self.shell.user_ns[name] = orchestration
        call_on_loop(lambda: orchestration.resume(args.run_id))
        self._show(orchestration, wait_for_it=args.wait)

    def _cmd_clear_cache(self, args: argparse.Namespace) -> None:
        from ..store import open_store

        store = open_store(args.store or self.store or None)

        async def clear() -> int:
            try:
                return await store.clear()
            finally:
                await store.close()

        print(f"removed {wait(clear())} entries from {store.url}")

    def _cmd_config(self, args: argparse.Namespace) -> None:
        from ..store import redact
        from ..store._url import default_url

        print(f"model        {self.model or '(ORCHESTRA_MODEL or gpt-4o-mini)'}")
        print(
            f"llm          {self.llm or '(OPENAI_API_KEY / OPENAI_BASE_URL from the environment)'}"
        )
        print(f"store        {redact(self.store or default_url())}")
        print(f"max_workers  {self.max_workers}")
        print(f"mode         {self.mode}")
        print(f"retries      {self.retries}")
        print(f"timeout      {self.timeout if self.timeout is not None else '(none)'}")
        print(f"max_tasks    {self.max_tasks}")
        print(f"executor     {self.executor or '(this kernel)'}")
        print(f"budget       {self.budget or '(none)'}")


async def _load_record(store_url: str | None, run_id: str) -> Any:
    from ..store import open_store

    store = open_store(store_url)
    try:
        return await store.load_run(run_id)
    finally:
        await store.close()


async def _latest_record(store_url: str | None, name: str) -> Any:
    """The run with id ``name``, else the newest run an orchestration ``name`` started."""
    from ..store import open_store

    store = open_store(store_url)
    try:
        record = await store.load_run(name)
        if record is not None:
            return record
        for entry in await store.list_runs(limit=500):
            if str(entry.get("run_id", "")).startswith(f"{name}-"):
                return await store.load_run(entry["run_id"])
        return None
    finally:
        await store.close()


def _redacted(store_url: str | None) -> str:
    from ..store import redact
    from ..store._url import default_url

    return redact(store_url or default_url())


def _split(line: str) -> list[str]:
    """Shell-like words: quotes group and are removed (``--llm "replay:a b.json?latency=1"``)."""
    try:
        return shlex.split(line)
    except ValueError as exc:
        raise UsageError(f"cannot read the arguments: {exc}") from None


def _parse(magic: Any, line: str) -> argparse.Namespace:
    return magic.parser.parse_args(_split(line))


def _orchestra_parser() -> MagicArgumentParser:
    parser = MagicArgumentParser(
        prog="%orchestra", description="Inspect and manage orchestrations."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("status", help="one line per orchestration in this kernel")
    runs = sub.add_parser("runs", help="run history from the store")
    runs.add_argument("--store")
    runs.add_argument("--limit", type=int, default=20)
    show = sub.add_parser(
        "show", help="display an orchestration (after a restart: its latest run in the store)"
    )
    show.add_argument("name")
    show.add_argument("--store")
    resume = sub.add_parser("resume", help="continue a run recorded in the store")
    resume.add_argument("run_id")
    resume.add_argument("--name")
    resume.add_argument("--store")
    resume.add_argument("--llm")
    resume.add_argument("--wait", action="store_true")
    clear = sub.add_parser("clear-cache", help="delete every stored result and run record")
    clear.add_argument("--store")
    sub.add_parser("config", help="show the settings (no secrets)")
    return parser
