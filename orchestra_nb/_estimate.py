"""What a run will cost before it runs: tokens, dollars and minutes, per task and in total.

``estimate(graph, llm=..., store=...)`` looks at a plan the way a run would:

* **cached or not** — every task's cache key comes from ``graph_cache_keys``, the
  function runs use; a task whose key the store holds costs nothing and takes no
  time (``refresh`` as in ``run``);
* **prompt tokens** — the prompt is built by ``llm_messages``, the LLM action's
  own function, and counted with the model's tokenizer (``_tokens``). Inputs
  already in the store are used as they are; an input not computed yet stands in
  at its expected size (its task's expected output, or ``PYTHON_RESULT_TOKENS``
  for a Python task), cut to the input budget exactly as the real one would be,
  and counted at four characters a token (the rule the budget itself uses);
* **output tokens** — the task's ``params.max_tokens`` when it sets one (the most
  it can write, since the request carries it); otherwise the median output of
  the LLM tasks this store has seen (its run records), within the client's own
  ``max_tokens``; otherwise ``DEFAULT_OUTPUT_TOKENS``;
* **cost** — from the price table (``_cost``), None for a model without a price;
* **time** — each task's measured median from the store's history for its kind
  (LLM or not), else its plan's ``estimated_time``, else a default; the run takes
  the longer of the critical path through the uncached tasks and their total
  work spread over ``max_workers`` (``pipeline``: the sum).

Counting runs in a worker thread, so a big plan never holds up the event loop.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._actions import DEFAULT_INPUT_BUDGET, graph_cache_keys, llm_messages
from ._cost import current_prices, format_tokens, format_usd
from ._tokens import Tokenizer, tokenizer_for

if TYPE_CHECKING:
    from ._plan import Task, TaskGraph
    from .llm import LLM
    from .store import ResultStore

DEFAULT_OUTPUT_TOKENS = 500  # an LLM task's answer when nothing better is known
PYTHON_RESULT_TOKENS = 250  # the size of a Python task's result, as a later prompt sees it
DEFAULT_LLM_MINUTES = 0.5  # an LLM call, when neither history nor the plan says
DEFAULT_OTHER_MINUTES = 0.05  # a Python or report task
HISTORY_RUNS = 10  # recent runs whose records teach the estimate
_FILLER = "\ue000"  # stands in for text not computed yet (a private-use character)


@dataclass(frozen=True)
class TaskEstimate:
    """One task's share of an estimate. ``basis`` says where the output figure came
    from: ``max_tokens``, ``history``, ``default``; ``cached`` / ``no LLM`` otherwise."""

    id: str
    kind: str
    cached: bool
    prompt_tokens: int
    output_tokens: int
    usd: float | None
    minutes: float
    basis: str

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "output_tokens": self.output_tokens,
            "tokens": self.tokens,
            "usd": self.usd,
            "minutes": self.minutes,
            "basis": self.basis,
        }


@dataclass(frozen=True)
class Estimate:
    """What running a plan is expected to take; ``str(est)`` is the one-line summary
    ("≈ 42k tokens · ≈ $0.08 · ≈ 6 min; 5 tasks cached")."""

    tasks: Mapping[str, TaskEstimate]
    minutes: float
    model: str | None = None
    tokenizer: str = ""  # how prompts were counted ("o200k_base", "≈ o200k_base")
    price: str = ""  # where the price comes from, in one line
    prices_as_of: str = ""
    critical_path: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def tokens(self) -> int:
        return sum(t.tokens for t in self.tasks.values())

    @property
    def prompt_tokens(self) -> int:
        return sum(t.prompt_tokens for t in self.tasks.values())

    @property
    def output_tokens(self) -> int:
        return sum(t.output_tokens for t in self.tasks.values())

    @property
    def usd(self) -> float | None:
        """Expected dollars; None when a task that will ask the model has no price."""
        total = 0.0
        for t in self.tasks.values():
            if t.usd is None:
                return None
            total += t.usd
        return total

    @property
    def cached(self) -> int:
        """How many tasks the store already holds (they cost nothing)."""
        return sum(t.cached for t in self.tasks.values())

    @property
    def llm_tasks(self) -> int:
        """How many tasks will ask the model."""
        return sum(1 for t in self.tasks.values() if not t.cached and t.kind == "llm")

    @property
    def line(self) -> str:
        """The one-line summary (what the widget shows before Run)."""
        usd = self.usd
        parts = [f"≈ {format_tokens(self.tokens)} tokens"]
        parts.append(f"≈ {format_usd(usd)}" if usd is not None else "cost unknown")
        parts.append(f"≈ {_minutes(self.minutes)}")
        line = " · ".join(parts)
        if self.cached:
            line += f"; {self.cached} task{'s' if self.cached != 1 else ''} cached"
        return line

    def __str__(self) -> str:
        return self.line

    def __repr__(self) -> str:
        return f"Estimate({self.line})"

    def table(self) -> str:
        """Per-task rows and the total, as plain text (the CLI prints it)."""
        rows = [("task", "kind", "prompt", "output", "cost", "time", "from")]
        for t in self.tasks.values():
            if t.cached:
                rows.append((t.id, t.kind, "-", "-", "$0", "-", "cached"))
                continue
            rows.append(
                (
                    t.id,
                    t.kind,
                    f"{t.prompt_tokens:,}",
                    f"{t.output_tokens:,}",
                    format_usd(t.usd) if t.kind == "llm" else "$0",
                    _minutes(t.minutes),
                    t.basis,
                )
            )
        usd = self.usd
        rows.append(
            (
                "total",
                "",
                f"{self.prompt_tokens:,}",
                f"{self.output_tokens:,}",
                format_usd(usd) if usd is not None else "unknown",
                _minutes(self.minutes),
                "",
            )
        )
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        right = {2, 3, 4, 5}
        lines = []
        for n, row in enumerate(rows):
            cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in
                     enumerate(zip(row, widths, strict=True))]  # fmt: skip
            lines.append("  ".join(cells).rstrip())
            if n == 0 or n == len(rows) - 2:
                lines.append("  ".join("-" * w for w in widths))
        about = [f"model {self.model or '(none)'}", f"prompts counted with {self.tokenizer}"]
        if self.price:
            about.append(self.price)
        return "\n".join([*lines, "; ".join(about), *self.notes])

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the widget, JSON and logs)."""
        return {
            "line": self.line,
            "tokens": self.tokens,
            "usd": self.usd,
            "minutes": self.minutes,
            "cached": self.cached,
            "llm_tasks": self.llm_tasks,
            "model": self.model,
            "tokenizer": self.tokenizer,
            "price": self.price,
            "prices_as_of": self.prices_as_of,
            "critical_path": list(self.critical_path),
            "tasks": [t.to_dict() for t in self.tasks.values()],
        }


def _minutes(minutes: float) -> str:
    if minutes < 1:
        seconds = max(1, round(minutes * 60)) if minutes > 0 else 0
        return f"{seconds} s"
    if minutes < 90:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.1f} h"


# --- what the store has seen ------------------------------------------------------------------


@dataclass(frozen=True)
class History:
    """Medians from the store's recent run records (None: nothing seen)."""

    output_tokens: float | None = None
    llm_seconds: float | None = None
    other_seconds: float | None = None
    samples: int = 0


async def read_history(store: ResultStore, *, runs: int = HISTORY_RUNS) -> History:
    """What the last ``runs`` runs in ``store`` say: LLM tasks' median output tokens and
    duration, other tasks' median duration (only tasks that ran and finished)."""
    outputs: list[int] = []
    llm_seconds: list[float] = []
    other_seconds: list[float] = []
    for summary in await store.list_runs(limit=runs):
        record = await store.load_run(str(summary.get("run_id")))
        if record is None:
            continue
        for entry in record.tasks.values():
            if not isinstance(entry, Mapping) or entry.get("status") != "done":
                continue
            completion = _number(entry.get("completion_tokens"))
            seconds = None
            start, end = _number(entry.get("start")), _number(entry.get("end"))
            if start is not None and end is not None and end >= start:
                seconds = end - start
            if completion:
                outputs.append(int(completion))
                if seconds is not None:
                    llm_seconds.append(seconds)
            elif seconds is not None and not _number(entry.get("tokens")):
                other_seconds.append(seconds)
    return History(
        output_tokens=statistics.median(outputs) if outputs else None,
        llm_seconds=statistics.median(llm_seconds) if llm_seconds else None,
        other_seconds=statistics.median(other_seconds) if other_seconds else None,
        samples=len(outputs),
    )


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def expected_output(task: Task, llm: LLM | None, history: History) -> tuple[int, str]:
    """An LLM task's expected output tokens and where the figure comes from."""
    asked = task.params.get("max_tokens") if task.params else None
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return asked, "max_tokens"
    ceiling = getattr(llm, "max_tokens", None)
    ceiling = ceiling if isinstance(ceiling, int) and ceiling > 0 else None
    if history.output_tokens is not None:
        value = round(history.output_tokens)
        return (min(value, ceiling) if ceiling else value), "history"
    return (min(DEFAULT_OUTPUT_TOKENS, ceiling) if ceiling else DEFAULT_OUTPUT_TOKENS), "default"


def prompt_tokens(
    task: Task,
    inputs: Mapping[str, Any],
    *,
    expected: Mapping[str, int],
    goal: str | None,
    names: Mapping[str, str],
    input_budget: int,
    tokenizer: Tokenizer,
) -> int:
    """Prompt tokens of ``task`` as the LLM action will build its prompt: ``inputs`` holds
    the inputs already known; the others (``expected``: id -> tokens) stand in at their
    expected size, cut to the input budget like real ones (see the module docstring)."""
    stand_ins = {dep: _FILLER * (4 * n) for dep, n in expected.items() if dep not in inputs}
    messages = llm_messages(
        task, {**inputs, **stand_ins}, goal=goal, names=names, input_budget=input_budget
    )
    filler = 0
    counted = []
    for message in messages:
        content = message["content"]
        if stand_ins:
            filler += content.count(_FILLER)
            content = content.replace(_FILLER, "")
        counted.append({**message, "content": content})
    return tokenizer.count_messages(counted) + -(-filler // 4)


# --- the estimate -------------------------------------------------------------------------------


async def estimate(
    graph: TaskGraph | Any,
    *,
    llm: LLM | str | None = None,
    store: ResultStore | str | None = None,
    runner: Callable[..., Any] | None = None,
    functions: Mapping[str, Callable[..., Any]] | Iterable[Callable[..., Any]] | None = None,
    refresh: bool | Iterable[str] = False,
    input_budget: int = DEFAULT_INPUT_BUDGET,
    max_workers: int = 5,
    mode: str = "dag",
    prices: Mapping[str, Any] | None = None,
    history: bool = True,
) -> Estimate:
    """What running ``graph`` with these settings is expected to take (nothing runs).

    Arguments mean what they mean for ``orchestra_nb.run``; ``prices`` overrides
    model prices for this estimate (see ``orchestra_nb.set_prices``), ``history=False``
    ignores what the store's earlier runs measured. A SQLite store that does not
    exist yet is not created: nothing is cached then. Raises what ``run`` raises
    for a plan that cannot run (an unregistered function, no LLM configured).
    """
    from ._plan import TaskGraph
    from .engine._selection import forced_ids

    graph = graph if isinstance(graph, TaskGraph) else TaskGraph.from_plan(graph)
    uses_llm = runner is None and any(t.kind == "llm" for t in graph.tasks.values())
    model_llm = None
    if uses_llm:
        from .llm import llm_from_spec

        model_llm = llm_from_spec(llm)
    keys = graph_cache_keys(graph, runner=runner, llm=model_llm or llm, functions=functions)
    forced = forced_ids(graph, refresh)
    opened = _open_existing(store)
    found: set[str] = set()
    known: dict[str, Any] = {}
    seen = History()
    if opened is not None:
        try:
            wanted = {k for tid, k in keys.items() if tid not in forced}
            found = await opened.has_many(wanted) if wanted else set()
            cached = {tid for tid in graph.tasks if tid not in forced and keys[tid] in found}
            needed = {  # cached inputs of LLM tasks that will run: their real text counts
                dep
                for tid, t in graph.tasks.items()
                if uses_llm and t.kind == "llm" and tid not in cached
                for dep in t.dependencies
                if dep in cached
            }
            if needed:
                values = await opened.get_many({keys[d] for d in needed})
                known = {d: values[keys[d]] for d in needed if keys[d] in values}
            if history:
                seen = await read_history(opened)
        finally:
            if opened is not store:
                await opened.close()
    cached_ids = {tid for tid in graph.tasks if tid not in forced and keys[tid] in found}
    model = getattr(model_llm, "model", None) if model_llm is not None else None
    table = current_prices(prices)
    tokenizer = tokenizer_for(model)
    return await asyncio.to_thread(
        _compute,
        graph,
        cached_ids=cached_ids,
        known=known,
        llm=model_llm,
        uses_llm=uses_llm,
        history=seen,
        tokenizer=tokenizer,
        table=table,
        model=model,
        input_budget=input_budget,
        workers=1 if mode == "pipeline" else max(1, int(max_workers)),
    )


def _open_existing(store: ResultStore | str | None) -> ResultStore | None:
    """The store to look in, or None for a SQLite file that does not exist (an estimate
    creates nothing)."""
    from .store import default_url, open_store, scheme_of, sqlite_path

    if store is not None and not isinstance(store, str):
        return store
    url = store or default_url()
    if scheme_of(url) == "sqlite" and not sqlite_path(url).exists():
        return None
    return open_store(url)


def _compute(
    graph: TaskGraph,
    *,
    cached_ids: set[str],
    known: Mapping[str, Any],
    llm: LLM | None,
    uses_llm: bool,
    history: History,
    tokenizer: Tokenizer,
    table: Any,
    model: str | None,
    input_budget: int,
    workers: int,
) -> Estimate:
    from .llm import Usage

    names = {tid: t.name for tid, t in graph.tasks.items()}
    rows: dict[str, TaskEstimate] = {}
    outputs: dict[str, int] = {}  # expected result size of each task, in tokens
    durations: dict[str, float] = {}
    for tid in graph.topological_order():
        task = graph.tasks[tid]
        asks_model = uses_llm and task.kind == "llm"
        if tid in cached_ids:
            rows[tid] = TaskEstimate(tid, task.kind, True, 0, 0, 0.0, 0.0, "cached")
            outputs[tid] = _result_tokens(known.get(tid), tokenizer, asks_model)
            durations[tid] = 0.0
            continue
        minutes = _task_minutes(task, asks_model, history)
        durations[tid] = minutes
        if not asks_model:
            rows[tid] = TaskEstimate(tid, task.kind, False, 0, 0, 0.0, minutes, "no LLM")
            outputs[tid] = (
                sum(outputs[d] for d in task.dependencies)
                if task.kind == "report"
                else PYTHON_RESULT_TOKENS
            )
            continue
        out, basis = expected_output(task, llm, history)
        inputs = {d: known[d] for d in task.dependencies if d in known}
        expected = {d: outputs[d] for d in task.dependencies}
        prompt = prompt_tokens(
            task,
            inputs,
            expected=expected,
            goal=graph.goal,
            names=names,
            input_budget=input_budget,
            tokenizer=tokenizer,
        )
        usd = table.cost(model, Usage(prompt, out))
        rows[tid] = TaskEstimate(tid, task.kind, False, prompt, out, usd, minutes, basis)
        outputs[tid] = out
    path, length = _longest_path(graph, durations)
    minutes = max(length, sum(durations.values()) / workers)
    notes = []
    if uses_llm and table.lookup(model) is None:
        notes.append(f"no price for model {model!r}: give one with orchestra_nb.set_prices")
    ordered = {tid: rows[tid] for tid in graph.tasks}
    return Estimate(
        ordered,
        minutes,
        model=model,
        tokenizer=tokenizer.label if uses_llm else "",
        price=table.describe(model) if uses_llm and table.lookup(model) else "",
        prices_as_of=table.as_of,
        critical_path=path,
        notes=tuple(notes),
    )


def _result_tokens(value: Any, tokenizer: Tokenizer, llm: bool) -> int:
    if value is None:
        return DEFAULT_OUTPUT_TOKENS if llm else PYTHON_RESULT_TOKENS
    from ._actions import result_text

    return max(1, len(result_text(value)) // 4)


def _task_minutes(task: Task, asks_model: bool, history: History) -> float:
    measured = history.llm_seconds if asks_model else history.other_seconds
    if measured is not None:
        return measured / 60
    if task.estimated_time is not None:
        return float(task.estimated_time)
    return DEFAULT_LLM_MINUTES if asks_model else DEFAULT_OTHER_MINUTES


def _longest_path(graph: TaskGraph, minutes: Mapping[str, float]) -> tuple[tuple[str, ...], float]:
    best: dict[str, float] = {}
    prev: dict[str, str | None] = {}
    for tid in graph.topological_order():
        deps = graph.tasks[tid].dependencies
        parent = max(deps, key=lambda d: best[d]) if deps else None
        best[tid] = minutes[tid] + (best[parent] if parent else 0.0)
        prev[tid] = parent
    if not best:
        return (), 0.0
    end = max(best, key=best.__getitem__)
    path = [end]
    while prev[path[-1]] is not None:
        path.append(prev[path[-1]])  # type: ignore[arg-type]
    return tuple(reversed(path)), best[end]
