"""What a task does: ask the LLM, call a registered Python function, or assemble a report.

``Actions`` picks the action for each task by its ``kind`` and gives each a
fingerprint for the cache key (model and sampling parameters, function name and
version). Sync functions run in worker threads so they never block the loop.
Actions know nothing about graphs beyond the task and its inputs, and nothing
about widgets.

A plan may come from a model, so an LLM task's ``params`` reach its request
only through the LLM client's allow-list (``AllowedParams``): checked for the
whole graph before a run starts, and again for each call.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import functools
import html
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._cache import callable_name, code_version
from ._errors import RunError
from ._values import Image, Markdown

if TYPE_CHECKING:
    from ._plan import Task, TaskGraph
    from .llm import LLM, Usage

Runner = Callable[["Task", dict[str, Any]], Any]
KNOWN_KINDS = ("llm", "python", "report")
DEFAULT_INPUT_BUDGET = 6000  # tokens of upstream results an LLM task sees


# --- registered Python functions ---------------------------------------------------


@dataclass(frozen=True)
class TaskFunction:
    """A Python function tasks can name with ``function=`` (or by their id)."""

    name: str
    func: Callable[..., Any]
    version: str

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


# --- running sync code off the loop --------------------------------------------------------


class ThreadRunner:
    """Runs sync callables in threads without ever blocking the loop.

    A sync call that overstays its timeout cannot be stopped; its thread is
    abandoned to a retired pool so it never holds a slot new work needs.
    """

    def __init__(self, max_workers: int):
        from concurrent.futures import ThreadPoolExecutor

        self._factory = functools.partial(
            ThreadPoolExecutor, max_workers=max(1, max_workers), thread_name_prefix="orchestra"
        )
        self._pool: Executor | None = None

    async def call(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        if self._pool is None:
            self._pool = self._factory()
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        future = loop.run_in_executor(self._pool, functools.partial(ctx.run, func, *args, **kwargs))
        try:
            return await future
        except asyncio.CancelledError:
            if not future.done():
                self.retire()
            raise

    def retire(self) -> None:
        """Hand the current pool (with a stuck thread) off; new calls get a fresh one."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=False)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


async def call_maybe_async(
    threads: ThreadRunner, func: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """Await coroutine functions; run sync ones in a thread; await awaitable results."""
    if _is_async(func):
        result = await func(*args, **kwargs)
    else:
        result = await threads.call(func, *args, **kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result


def _is_async(func: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


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
        threads: ThreadRunner,
        executor: Any = None,
    ) -> None:
        self.runner = runner
        self._llm_spec = llm
        self._llm: LLM | None = llm if llm is not None and not isinstance(llm, str) else None
        self.functions = {**_REGISTRY, **_as_task_functions(functions)}
        self.goal = goal
        self.input_budget = input_budget
        self.threads = threads
        self.executor = executor
        self.store_url: str | None = None  # set by the run: where cluster workers commit
        self.signing_key: bytes | str | None = None
        self.names: dict[str, str] = {}
        self._runner_is_async = runner is not None and _is_async(runner)
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
            elif task.kind not in KNOWN_KINDS:
                problems.append(f"task {tid!r} has unknown kind {task.kind!r}")
        if problems:
            hint = (
                "; register functions with @orchestra_nb.task_function"
                if any("function" in p for p in problems)
                else f" (known kinds: {', '.join(KNOWN_KINDS)})"
            )
            raise RunError("; ".join(problems[:5]) + hint)
        if any(t.kind == "llm" for t in graph.tasks.values()):
            self.llm  # noqa: B018 - resolve now: a missing API key fails before the run
            for task in graph.tasks.values():
                if task.kind == "llm":
                    self.request_params(task)  # PlanError naming the task

    def request_params(self, task: Task) -> dict[str, Any]:
        """The parameters an LLM task's ``params`` add to its request: only what the LLM
        client's ``allowed_params`` allows (defaults: ``AllowedParams()``), within its
        bounds, never above the client's own settings. PlanError otherwise."""
        if not task.params:
            return {}
        from .llm import AllowedParams

        llm = self.llm
        allowed = getattr(llm, "allowed_params", None) or AllowedParams()
        return allowed.check(
            task.id, task.params, client_max_tokens=getattr(llm, "max_tokens", None)
        )

    async def prepare(self, graph: TaskGraph) -> None:
        """Slow setup off the loop before tasks start (e.g. importing the LLM client)."""
        if self.runner is None and any(t.kind == "llm" for t in graph.tasks.values()):
            prepare = getattr(self.llm, "prepare", None)
            if prepare is not None:
                await prepare()

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
        if self._runner_is_async:
            result = await self.runner(task, inputs)  # type: ignore[misc]
            return await result if inspect.isawaitable(result) else result
        if self.runner is not None:
            return await call_maybe_async(self.threads, self.runner, task, inputs)
        if task.kind == "python":
            return await self._call_function(task, inputs, ctx)
        if task.kind == "report":
            return assemble_report(task, inputs, names=self.names, goal=self.goal)
        return await self._ask_llm(task, inputs, ctx)

    async def _ask_llm(self, task: Task, inputs: dict[str, Any], ctx: TaskContext) -> Any:
        params = self.request_params(task)  # again: tasks may be added to a running graph
        messages = llm_messages(
            task, inputs, goal=self.goal, names=self.names, input_budget=self.input_budget
        )
        if self.remote(task):  # an LLM call made by a cluster worker (usage stays there)
            return await self.executor.submit(
                remote_completion,
                {"llm": self.llm, "messages": messages, "params": params},
                task=task,
                ctx=ctx,
                store_url=self.store_url,
                signing_key=self.signing_key,
            )
        completion = await self.llm.complete(messages, **params)
        ctx.add_usage(completion.usage)
        return Markdown(completion.text)

    def remote(self, task: Task) -> bool:
        """Whether this task runs on the executor's cluster (its inputs may stay remote)."""
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
        return await call_maybe_async(self.threads, entry.func, **kwargs)


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
