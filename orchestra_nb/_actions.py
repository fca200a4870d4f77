"""What a task does: ask the LLM, call a registered Python function, or assemble a report.

``Actions`` picks the action for each task by its ``kind`` and gives each a
fingerprint for the cache key (model and sampling parameters, function name and
version); ``graph_cache_keys`` turns those into every task's key. A task's code
runs through an ``Executor``: the local one (sync functions in worker threads,
so they never block the loop) or a cluster executor the user gave. Actions look
at a whole graph only to check that every task can run and to compute keys;
executing a task takes just the task and its inputs. They know nothing about
widgets.
"""

from __future__ import annotations

import base64
import html
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cache import callable_name, code_version, graph_keys
from ._errors import RunError
from ._executors import Executor, LocalExecutor, is_async
from ._kinds import KINDS
from ._text import first_line
from ._values import Image, Markdown
from .store._reference import resolve

if TYPE_CHECKING:
    from ._plan import Task, TaskGraph
    from .llm import LLM, Usage
    from .store import ResultStore

Runner = Callable[["Task", dict[str, Any]], Any]
DEFAULT_INPUT_BUDGET = 6000  # tokens of upstream results an LLM task sees


# --- registered Python functions ---------------------------------------------------


@dataclass(frozen=True)
class TaskFunction:
    """A Python function tasks can name with ``function=`` (or by their id)."""

    name: str
    func: Callable[..., Any]
    version: str

    @property
    def summary(self) -> str:
        """The first line of the function's docstring (shown to the planner and in lists)."""
        return first_line(self.func)

    def fingerprint(self) -> dict[str, Any]:
        return {"action": "python", "function": self.name, "version": self.version}


_REGISTRY: dict[str, TaskFunction] = {}


def task_function(
    func: Callable[..., Any] | None = None, *, name: str | None = None, version: str | None = None
) -> Any:
    """Register a function that ``kind="python"`` tasks can run.

    Use as ``@task_function`` or ``@task_function(name="chart", version="2")``.
    The function's arguments are filled by name: ``inputs`` (dependency id ->
    result), ``task``, ``params``, ``goal``, any dependency id (that input) or any
    key of the task's ``params``. Sync functions run in a thread; async ones on
    the loop. ``version`` defaults to a hash of the source, so editing the
    function invalidates its cached results.
    """

    def register(f: Callable[..., Any]) -> Callable[..., Any]:
        entry = TaskFunction(name or f.__name__, f, version or code_version(f))
        _REGISTRY[entry.name] = entry
        return f

    return register(func) if func is not None else register


def registered_functions() -> dict[str, TaskFunction]:
    return dict(_REGISTRY)


def _as_task_functions(functions: Any) -> dict[str, TaskFunction]:
    if functions is None:
        return {}
    if isinstance(functions, Mapping):
        items = functions.items()
    else:
        items = ((getattr(f, "__name__", str(f)), f) for f in functions)
    out = {}
    for fname, f in items:
        out[fname] = f if isinstance(f, TaskFunction) else TaskFunction(fname, f, code_version(f))
    return out


# --- per-call context -------------------------------------------------------------------


@dataclass(slots=True)
class TaskContext:
    """Handed to actions: who is running and where token usage goes."""

    run_id: str
    task: Task
    attempt: int
    goal: str | None = None
    usage: Usage | None = None
    key: str | None = None  # the task's cache key (where its result is stored)

    def add_usage(self, usage: Usage) -> None:
        self.usage = usage if self.usage is None else self.usage + usage


# --- turning results into text -----------------------------------------------------------


def result_text(value: Any) -> str:
    """A textual view of a result for prompts and reports."""
    if isinstance(value, str):
        return value
    if isinstance(value, Image):
        return f"[image ({value.mime})]"  # no byte count: it must not change the prompt
    if type(value).__module__.startswith("pandas"):
        return value.to_csv() if hasattr(value, "to_csv") else str(value)
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def fit_to_budget(texts: Mapping[str, str], budget_tokens: int) -> dict[str, str]:
    """Share a token budget (≈ 4 characters a token) fairly between inputs.

    Small inputs keep everything; what they leave over goes to the large ones,
    which are cut with a visible marker.
    """
    budget = max(0, budget_tokens) * 4
    out: dict[str, str] = {}
    remaining = dict(texts)
    while remaining:
        share = budget // len(remaining)
        small = {k: v for k, v in remaining.items() if len(v) <= share}
        if not small:
            for k, v in remaining.items():
                cut = len(v) - share
                out[k] = v[:share] + f"\n…[{cut} more characters cut to fit the prompt]"
            break
        for k, v in small.items():
            out[k] = v
            budget -= len(v)
            del remaining[k]
    return {k: out[k] for k in texts}


# --- the actions ---------------------------------------------------------------------------

SYSTEM_PROMPT = (
    "You are a careful analyst completing one step of a larger piece of work.\n"
    "Overall goal: {goal}\n"
    "Do only the step you are given. Use the results of earlier steps when they are "
    "provided. Answer in Markdown, without preamble."
)


def llm_messages(
    task: Task,
    inputs: Mapping[str, Any],
    *,
    goal: str | None,
    names: Mapping[str, str],
    input_budget: int = DEFAULT_INPUT_BUDGET,
) -> list[dict[str, str]]:
    """The prompt of an LLM task: the goal, the step, and its inputs within a token budget."""
    texts = fit_to_budget({dep: result_text(inputs[dep]) for dep in inputs}, input_budget)
    parts = [f"## Step: {task.name}"]
    if task.description:
        parts.append(task.description)
    if texts:
        parts.append("## Results of earlier steps")
        for dep, text in texts.items():
            parts.append(f"### {names.get(dep, dep)}\n{text}")
    return [
        {"role": "system", "content": SYSTEM_PROMPT.format(goal=goal or task.name)},
        {"role": "user", "content": "\n\n".join(parts)},
    ]


def assemble_report(
    task: Task, inputs: Mapping[str, Any], *, names: Mapping[str, str], goal: str | None
) -> Markdown:
    """One Markdown document with every input as a section; images inline as data URIs.

    A section gets its task's name as a heading unless its text starts with a
    heading of its own (LLM answers often do).
    """
    title = task.name if task.name != task.id else (goal or task.name)
    parts = [f"# {title}"]
    if task.description:
        parts.append(task.description)
    for dep, value in inputs.items():
        name = names.get(dep, dep)
        body = _section(name, value)
        parts.append(body if body.startswith("#") else f"## {name}\n\n{body}")
    return Markdown("\n\n".join(parts) + "\n")


def _section(name: str, value: Any) -> str:
    if isinstance(value, Image):
        data = base64.b64encode(value.data).decode()
        return f"![{html.escape(name)}](data:{value.mime};base64,{data})"
    if type(value).__module__.startswith("pandas") and hasattr(value, "columns"):
        return markdown_table(value)
    if isinstance(value, list) and value and all(isinstance(v, Image) for v in value):
        return "\n\n".join(_section(name, v) for v in value)
    if isinstance(value, str):
        return value.strip()
    return "```json\n" + result_text(value) + "\n```"


def markdown_table(frame: Any, *, max_rows: int = 100) -> str:
    """A DataFrame as a Markdown table (hand-written: tabulate, which pandas' to_markdown
    needs, is one more dependency for twenty lines)."""

    def cell(value: Any) -> str:
        text = f"{value:,.4g}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    index_name = frame.index.name or ""
    header = [index_name, *map(str, frame.columns)]
    lines = ["| " + " | ".join(map(cell, header)) + " |", "|" + "---|" * len(header)]
    for label, row in zip(
        frame.index[:max_rows], frame.head(max_rows).itertuples(index=False), strict=True
    ):
        lines.append("| " + " | ".join(cell(v) for v in (label, *row)) + " |")
    if len(frame) > max_rows:
        lines.append(f"\n*{len(frame) - max_rows} more rows not shown*")
    return "\n".join(lines)


class Actions:
    """Chooses and runs the action for each task; gives each its cache fingerprint."""

    def __init__(
        self,
        *,
        runner: Runner | None = None,
        llm: LLM | str | None = None,
        functions: Mapping[str, Any] | Iterable[Callable[..., Any]] | None = None,
        goal: str | None = None,
        input_budget: int = DEFAULT_INPUT_BUDGET,
        local: LocalExecutor | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.runner = runner
        self._llm_spec = llm
        self._llm: LLM | None = llm if llm is not None and not isinstance(llm, str) else None
        self.functions = {**_REGISTRY, **_as_task_functions(functions)}
        self.goal = goal
        self.input_budget = input_budget
        self.local = local or LocalExecutor(1)  # its threads start on first use
        self.executor = executor
        self.store: ResultStore | None = None  # the run's store (see use_store)
        self.store_url: str | None = None  # where cluster workers commit
        self.signing_key: bytes | str | None = None
        self.names: dict[str, str] = {}
        self._runner_is_async = runner is not None and is_async(runner)
        if runner is not None:
            self._runner_fp = {
                "action": "runner",
                "runner": callable_name(runner),
                "version": code_version(runner),
            }

    @property
    def llm_spec(self) -> LLM | str | None:
        """What to pass to a later run to get the same LLM."""
        return self._llm if self._llm is not None else self._llm_spec

    @property
    def llm(self) -> LLM:
        if self._llm is None:
            from .llm import llm_from_spec

            self._llm = llm_from_spec(self._llm_spec)  # ConfigError when nothing is configured
        return self._llm

    def check(self, graph: TaskGraph) -> None:
        """Refuse, before anything runs, a graph some task of which cannot run."""
        self.names = {tid: t.name for tid, t in graph.tasks.items()}
        if self.runner is not None:
            return
        problems = []
        for tid, task in graph.tasks.items():
            if task.kind == "python":
                fname = task.function or tid
                if fname not in self.functions:
                    problems.append(f"task {tid!r} needs the Python function {fname!r}")
            elif task.kind not in KINDS:
                problems.append(f"task {tid!r} has unknown kind {task.kind!r}")
        if problems:
            hint = (
                "; register functions with @orchestra_nb.task_function"
                if any("function" in p for p in problems)
                else f" (known kinds: {', '.join(KINDS)})"
            )
            raise RunError("; ".join(problems[:5]) + hint)
        if any(t.kind == "llm" for t in graph.tasks.values()):
            self.llm  # noqa: B018 - resolve now: a missing API key fails before the run

    async def prepare(self, graph: TaskGraph) -> None:
        """Slow setup off the loop before tasks start (e.g. importing the LLM client)."""
        if self.runner is None and any(t.kind == "llm" for t in graph.tasks.values()):
            prepare = getattr(self.llm, "prepare", None)
            if prepare is not None:
                await prepare()

    def use_store(self, store: ResultStore) -> None:
        """The run's store: where inputs a cluster worker left behind are read from, and
        (when there is a cluster executor) where its workers commit results."""
        self.store = store
        if self.executor is not None:
            self.store_url = store.shared_url()
            self.signing_key = store.codecs.signing_key

    async def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with results a cluster worker left in the store loaded from it."""
        if self.store is None:
            return values
        return await resolve(self.store, values)

    async def aclose(self) -> None:
        """Stop the local threads (a call still running in one is abandoned)."""
        await self.local.aclose()

    def cache_keys(self, graph: TaskGraph) -> dict[str, str]:
        """Every task's cache key when these actions run it (see ``graph_cache_keys``)."""
        return graph_keys(graph, self.fingerprint)

    def fingerprint(self, task: Task) -> dict[str, Any]:
        if self.runner is not None:
            return self._runner_fp
        if task.kind == "python":
            return self.functions[task.function or task.id].fingerprint()
        if task.kind == "llm":
            identity = self.llm.cache_identity()
            return {"action": "llm", "llm": identity, "goal": self.goal}
        return {"action": task.kind, "goal": self.goal if task.kind == "report" else None}

    async def execute(self, task: Task, inputs: dict[str, Any], ctx: TaskContext) -> Any:
        """Run the task's action on its inputs: its value, or a ``StoredResult`` when a
        cluster worker committed it to the store under ``ctx.key``."""
        if self._runner_is_async:
            result = await self.runner(task, inputs)  # type: ignore[misc]
            return await result if inspect.isawaitable(result) else result
        if self.executor is not None and not self.remote(task):
            inputs = await self.resolve(inputs)  # a local task needs the values themselves
        if self.runner is not None:
            return await self.local.call(self.runner, task, inputs)
        if task.kind == "python":
            return await self._call_function(task, inputs, ctx)
        if task.kind == "report":
            return assemble_report(task, inputs, names=self.names, goal=self.goal)
        return await self._ask_llm(task, inputs, ctx)

    async def _ask_llm(self, task: Task, inputs: dict[str, Any], ctx: TaskContext) -> Any:
        messages = llm_messages(
            task, inputs, goal=self.goal, names=self.names, input_budget=self.input_budget
        )
        if self.remote(task):  # an LLM call made by a cluster worker (usage stays there)
            return await self.executor.submit(
                remote_completion,
                {"llm": self.llm, "messages": messages, "params": dict(task.params)},
                task=task,
                ctx=ctx,
                store_url=self.store_url,
                signing_key=self.signing_key,
            )
        completion = await self.llm.complete(messages, **dict(task.params))
        ctx.add_usage(completion.usage)
        return Markdown(completion.text)

    def remote(self, task: Task) -> bool:
        """Whether this task runs on the cluster executor (its inputs may stay remote)."""
        return self.runner is None and self.executor is not None and self.executor.handles(task)

    async def _call_function(self, task: Task, inputs: dict[str, Any], ctx: TaskContext) -> Any:
        entry = self.functions[task.function or task.id]
        kwargs = bind_arguments(entry, task, inputs, goal=self.goal)
        if self.remote(task):
            return await self.executor.submit(
                entry.func,
                kwargs,
                task=task,
                ctx=ctx,
                store_url=self.store_url,
                signing_key=self.signing_key,
            )
        return await self.local.call(entry.func, **kwargs)


def graph_cache_keys(
    graph: TaskGraph,
    *,
    runner: Runner | None = None,
    llm: LLM | str | None = None,
    functions: Mapping[str, Any] | Iterable[Callable[..., Any]] | None = None,
) -> dict[str, str]:
    """The cache key of every task, exactly as a run with these settings computes them.

    The one place keys come from: a run, ``Orchestrator.invalidate`` and the widget's
    stale marking all call it, so "this task is stale" always means "the next run
    computes it again". Raises ``RunError`` when a task cannot run (an unregistered
    function, an unknown kind) and ``ConfigError`` when an LLM task has no LLM.
    """
    actions = Actions(runner=runner, llm=llm, functions=functions, goal=graph.goal)
    actions.check(graph)
    return actions.cache_keys(graph)


async def remote_completion(
    llm: Any, messages: list[dict[str, str]], params: dict[str, Any]
) -> Any:
    """An LLM task's call, as run on a cluster worker."""
    completion = await llm.complete(messages, **params)
    return Markdown(completion.text)


def bind_arguments(
    entry: TaskFunction, task: Task, inputs: Mapping[str, Any], *, goal: str | None
) -> dict[str, Any]:
    """Fill a function's parameters by name from the task, its inputs and params."""
    available: dict[str, Any] = {
        **task.params,
        **inputs,
        "inputs": dict(inputs),
        "task": task,
        "params": dict(task.params),
        "goal": goal,
    }
    kwargs: dict[str, Any] = {}
    signature = inspect.signature(entry.func)
    for pname, param in signature.parameters.items():
        if param.kind is param.VAR_KEYWORD:
            kwargs.update({k: v for k, v in inputs.items() if k not in kwargs})
        elif param.kind is param.VAR_POSITIONAL:
            continue
        elif pname in available:
            kwargs[pname] = available[pname]
        elif param.default is param.empty:
            raise TypeError(
                f"function {entry.name!r} needs argument {pname!r} but task {task.id!r} "
                f"has no input or param of that name (inputs: {', '.join(inputs) or 'none'})"
            )
    return kwargs
