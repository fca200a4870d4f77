"""Budgets: a cap on what a run may spend, checked before each LLM task starts.

``Budget(tokens=..., usd=...)`` is a run option (``run(..., budget=...)``), kept in
the run's header so ``resume`` applies it again (or a larger one given then). It
is the user's limit: nothing in a plan can raise it — a plan has no budget field,
a task's ``max_tokens`` can only lower what a request may spend, and spending is
what the API's responses report (``usage``), priced with the price table.

The run enforces it through the engine's admission hook: ``BudgetGate.refuse`` is
asked as each task is handed out. Only LLM tasks are checked. A task is let
through when what the run has spent — every part of it, earlier ones before a
resume included — plus what the tasks already started are expected to spend,
plus this task's own estimate stays within the budget. The estimate counts the
real prompt (its inputs are known by then) with the model's tokenizer and adds
the expected output (``_estimate.expected_output``). Once a task is refused the
run stops starting LLM tasks:

* without approval gates, each is skipped with one line that says what was spent
  and what is left ("budget reached: spent $0.92 of $1.00 ($0.08 left; the next
  LLM task needs ≈ $0.11); 7 LLM tasks not started — resume with a larger
  budget"); finished work stays in the store, so ``resume(run_id,
  budget=Budget(usd=2))`` runs only the rest;
* with approval gates on (``approve=...``), each waits for a person: approving it
  lets that one task go over.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._cost import Price, current_prices, format_usd, read_prices
from ._errors import ConfigError

if TYPE_CHECKING:
    from ._actions import Actions
    from ._plan import Task, TaskGraph
    from ._tokens import Tokenizer
    from .engine._state import RunState
    from .llm import Usage
    from .store import ResultStore

_IN_FLIGHT = frozenset({"ready", "running", "waiting"})
_NOT_STARTED = frozenset({"pending", "ready", "waiting", "awaiting_approval"})


@dataclass(frozen=True)
class Budget:
    """What a run may spend: ``tokens`` (prompt and output together), ``usd`` (at the
    price table's prices, ``prices`` overriding some for this budget), or both."""

    tokens: int | None = None
    usd: float | None = None
    prices: Mapping[str, Price] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.tokens is None and self.usd is None:
            raise ConfigError("a Budget needs tokens=... or usd=... (or both)")
        if self.tokens is not None and (
            not isinstance(self.tokens, int) or isinstance(self.tokens, bool) or self.tokens < 1
        ):
            raise ConfigError(f"budget tokens must be a whole number ≥ 1, not {self.tokens!r}")
        if self.usd is not None and (
            not isinstance(self.usd, int | float)
            or isinstance(self.usd, bool)
            or not math.isfinite(self.usd)
            or self.usd <= 0
        ):
            raise ConfigError(f"budget usd must be a positive number of dollars, not {self.usd!r}")
        object.__setattr__(self, "prices", read_prices(self.prices or {}))

    def __str__(self) -> str:
        parts = []
        if self.usd is not None:
            parts.append(format_usd(self.usd))
        if self.tokens is not None:
            parts.append(f"{self.tokens:,} tokens")
        return " and ".join(parts)

    def to_record(self) -> dict[str, Any]:
        """Plain data for the run's header."""
        return {
            "tokens": self.tokens,
            "usd": self.usd,
            "prices": {
                m: {k: v for k, v in vars(p).items() if v is not None}
                for m, p in self.prices.items()
            },
        }

    @classmethod
    def from_record(cls, saved: Any) -> Budget | None:
        """A budget from a header (None when there is none); ``ConfigError`` when the
        record holds something that is not a budget."""
        if saved is None or isinstance(saved, Budget):
            return saved
        if not isinstance(saved, Mapping):
            raise ConfigError(f"the run's recorded budget is not a budget: {saved!r:.60}")
        return cls(
            tokens=saved.get("tokens"), usd=saved.get("usd"), prices=saved.get("prices") or {}
        )

    @classmethod
    def parse(cls, text: str) -> Budget:
        """A budget as people type it: ``1.50`` or ``$1.50`` (dollars), ``200k tokens``,
        ``200000 tokens``, or both joined by ``,`` (``"$2, 500k tokens"``)."""
        tokens: int | None = None
        usd: float | None = None
        for part in str(text).split(","):
            word = part.strip().lower()
            match = _TOKENS.fullmatch(word)
            if match:
                number = float(match.group(1)) * _SCALE[match.group(2) or ""]
                if tokens is not None or not math.isfinite(number) or number < 1:
                    raise ConfigError(_bad_budget(text))
                tokens = int(number)
                continue
            match = _DOLLARS.fullmatch(word)
            if not match or usd is not None:
                raise ConfigError(_bad_budget(text))
            usd = float(match.group(1))
            if not math.isfinite(usd) or usd <= 0:
                raise ConfigError(_bad_budget(text))
        return cls(tokens=tokens, usd=usd)


_TOKENS = re.compile(r"(\d+(?:\.\d+)?)\s*([km]?)\s*tok(?:en)?s?")
_DOLLARS = re.compile(r"\$?\s*(\d+(?:\.\d+)?|\.\d+)\s*(?:usd|\$)?")
_SCALE = {"": 1, "k": 1_000, "m": 1_000_000}


def _bad_budget(text: str) -> str:
    shown = text if len(text) <= 40 else text[:39] + "…"
    return (
        f"bad budget {shown!r}: give dollars (1.50 or $1.50), tokens (200k tokens), "
        "or both ($1.50, 200k tokens)"
    )


def spent_before(records: Mapping[str, Mapping[str, Any]]) -> Usage:
    """What the earlier parts of a run spent, from its task records (for ``resume``)."""
    from .llm import Usage

    prompt = completion = 0
    for entry in records.values():
        if not isinstance(entry, Mapping):
            continue
        prompt += _count(entry.get("prompt_tokens"))
        completion += _count(entry.get("completion_tokens"))
    return Usage(prompt, completion)


def _count(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**12:
        return value
    return 0


class BudgetGate:
    """The engine's ``Admission`` for one run with a budget (see the module docstring)."""

    def __init__(
        self, budget: Budget, *, actions: Actions, gated: bool, store: ResultStore | None = None
    ) -> None:
        self.budget = budget
        self.actions = actions
        self.store = store
        self.gated = gated  # approval gates are on: a refused task awaits a person
        self.prices = current_prices(budget.prices)
        self.model: str | None = None
        self.price: Price | None = None
        self.tokenizer: Tokenizer | None = None
        self.history: Any = None
        self.reserved: dict[str, Usage] = {}  # admitted LLM tasks not finished: their estimate
        self.asked: set[str] = set()  # refused while gated: handed out again = approved
        self.kinds: dict[str, str] = {}
        self.exhausted = False
        self._reason: str | None = None

    def check(self, graph: TaskGraph) -> None:
        """Refuse at once a dollar budget for a model with no price (``ConfigError``)."""
        self.kinds = {tid: t.kind for tid, t in graph.tasks.items()}
        if self.actions.runner is not None or "llm" not in self.kinds.values():
            return
        self._resolve_model()
        if self.budget.usd is not None and self.price is None:
            raise ConfigError(
                f"a budget in dollars needs the price of model {self.model!r}: give it with "
                f"orchestra_nb.set_prices({{{self.model!r}: {{'input': USD, 'output': USD}}}}) "
                "(USD per 1M tokens) or budget in tokens"
            )

    def _resolve_model(self) -> None:
        from ._tokens import tokenizer_for

        self.model = str(getattr(self.actions.llm, "model", "") or "") or None
        self.price = self.prices.lookup(self.model)
        self.tokenizer = tokenizer_for(self.model)

    async def prepare(self, graph: TaskGraph) -> None:
        """Before the first task: load the tokenizer (in a thread) and read what the
        store's earlier runs say about output sizes."""
        from ._errors import StoreError
        from ._estimate import History, read_history
        from ._tokens import load_tokenizer_off_loop

        self.kinds.update({tid: t.kind for tid, t in graph.tasks.items()})
        if self.tokenizer is None:
            if self.actions.runner is not None or "llm" not in self.kinds.values():
                self.history = History()
                return
            self._resolve_model()
        assert self.tokenizer is not None
        await load_tokenizer_off_loop(self.tokenizer)
        try:
            self.history = await read_history(self.store) if self.store else History()
        except StoreError:
            self.history = History()

    # --- the admission hook --------------------------------------------------------------

    def refuse(self, task: Task, state: RunState) -> str | None:
        """None to let ``task`` start, or the one-line reason it may not."""
        self.kinds.setdefault(task.id, task.kind)
        if task.kind != "llm" or self.actions.runner is not None:
            return None
        if self.tokenizer is None:  # an LLM task joined a run that had none
            self._resolve_model()
        self._settle(state)
        need = self.need(task, state)
        if task.id in self.asked:  # a person approved going over for this one
            self.asked.discard(task.id)
            self.reserved[task.id] = need
            return None
        if self.exhausted or self._crosses(state, need):
            self.exhausted = True
            if self.gated:
                self.asked.add(task.id)
                return self._over(state, need)
            if self._reason is None:
                self._reason = self._stop(state, need)
            return self._reason
        self.reserved[task.id] = need
        return None

    def need(self, task: Task, state: RunState) -> Usage:
        """What ``task`` is expected to spend: its real prompt, counted, and its
        expected output."""
        from ._actions import llm_messages
        from ._estimate import History, expected_output
        from .llm import Usage

        actions = self.actions
        inputs = {dep: state.results[dep] for dep in task.dependencies if dep in state.results}
        messages = llm_messages(
            task, inputs, goal=actions.goal, names=actions.names, input_budget=actions.input_budget
        )
        assert self.tokenizer is not None
        prompt = self.tokenizer.count_messages(messages)
        output, _ = expected_output(task, actions.llm, self.history or History())
        return Usage(prompt, output)

    # --- spending ------------------------------------------------------------------------

    def _settle(self, state: RunState) -> None:
        """Forget reservations of tasks that ended (their real usage is in the state)."""
        status = state.status
        for tid in [t for t in self.reserved if status.get(t) not in _IN_FLIGHT]:
            del self.reserved[tid]

    def committed(self, state: RunState) -> Usage:
        """Spent so far plus what the tasks still running are expected to spend."""
        total = state.spent
        for usage in self.reserved.values():
            total = total + usage
        return total

    def usd(self, usage: Usage) -> float | None:
        if self.price is None:
            return None
        return self.price.cost(usage, discount=self.prices.batch_discount)

    def _crosses(self, state: RunState, need: Usage) -> bool:
        after = self.committed(state) + need
        budget = self.budget
        if budget.tokens is not None and after.total_tokens > budget.tokens:
            return True
        if budget.usd is not None:
            cost = self.usd(after)
            return cost is None or cost > budget.usd + 1e-12
        return False

    # --- what it says ------------------------------------------------------------------------

    def _status(self, state: RunState, need: Usage) -> str:
        """ "spent $0.92 of $1.00 ($0.08 left; the next LLM task needs ≈ $0.11)"."""
        spent, running = state.spent, self.committed(state)
        budget, parts = self.budget, []
        if budget.usd is not None:
            done, busy = self.usd(spent) or 0.0, (self.usd(running) or 0.0)
            extra = f" + ≈ {format_usd(busy - done)} running" if busy - done > 0 else ""
            left = max(0.0, budget.usd - busy)
            parts.append(
                f"spent {format_usd(done)}{extra} of {format_usd(budget.usd)} "
                f"({format_usd(left)} left; the next LLM task needs "
                f"≈ {format_usd(self.usd(need))})"
            )
        if budget.tokens is not None:
            done, busy = spent.total_tokens, running.total_tokens
            extra = f" + ≈ {busy - done:,} running" if busy > done else ""
            left = max(0, budget.tokens - busy)
            parts.append(
                f"spent {done:,}{extra} of {budget.tokens:,} tokens ({left:,} left; the next "
                f"LLM task needs ≈ {need.total_tokens:,})"
            )
        return "; ".join(parts)

    def _stop(self, state: RunState, need: Usage) -> str:
        waiting = sum(
            1
            for tid, s in state.status.items()
            if s in _NOT_STARTED and self.kinds.get(tid) == "llm" and tid not in self.reserved
        )
        plural = "s" if waiting != 1 else ""
        return (
            f"budget reached: {self._status(state, need)}; {waiting} LLM task{plural} not "
            "started — resume with a larger budget"
        )

    def _over(self, state: RunState, need: Usage) -> str:
        return f"over budget: {self._status(state, need)} — approve to go over"

    def summary(self, state: RunState) -> dict[str, Any]:
        """Spending against the budget, as plain data (for progress views)."""
        spent = state.spent
        return {
            "budget_usd": self.budget.usd,
            "budget_tokens": self.budget.tokens,
            "spent_usd": self.usd(spent),
            "spent_tokens": spent.total_tokens,
            "exhausted": self.exhausted,
        }
