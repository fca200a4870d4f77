"""What tokens cost: the price table and ``price_of``, the one place a cost is computed.

The package ships a dated table of list prices per model (``data/prices.json``,
USD per million prompt and output tokens, and what the provider's Batch API
charges). It is data, never fetched at run time, so it ages: ``PRICES_AS_OF``
says when it was right, and users override or extend it —

* for the process: ``orchestra_nb.set_prices({"my-model": {"input": 0.5,
  "output": 1.5}})`` (a tuple ``(input, output)`` works too; ``set_prices(None)``
  goes back to the shipped table);
* from a file: ``ORCHESTRA_PRICES=prices.json`` (read once; the file holds
  ``{"models": {...}}`` in the shipped format, or the models alone), which is
  also what the CLI's ``--prices FILE`` sets;
* for one call: ``estimate(..., prices=...)`` and ``Budget(..., prices=...)``.

A model is found by its exact name or as a dated snapshot of a known one
(``gpt-4o-mini-2024-07-18`` costs what ``gpt-4o-mini`` does). A model with no
price (a local Llama, a test server) has no cost: ``price_of`` returns None and
callers say "cost unknown" rather than invent one.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from .llm import Usage

PRICES_FILE = Path(__file__).parent / "data" / "prices.json"
PER_TOKENS = 1_000_000  # prices are per million tokens
_DATED = re.compile(r"-\d{4}-\d{2}-\d{2}$|-\d{4}$")  # gpt-4o-2024-08-06, gpt-4-0613


@dataclass(frozen=True)
class Price:
    """USD per million tokens: ``input`` (prompt), ``output`` (completion), and what
    the Batch API charges (``batch_input``/``batch_output``; None: the table's discount)."""

    input: float
    output: float
    batch_input: float | None = None
    batch_output: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "batch_input", "batch_output"):
            value = getattr(self, name)
            if value is None and name.startswith("batch"):
                continue
            if not _is_amount(value):
                raise ConfigError(
                    f"price {name} must be a number of USD per 1M tokens ≥ 0, not {value!r}"
                )

    def cost(self, usage: Usage, *, batch: bool = False, discount: float = 0.5) -> float:
        """USD for ``usage`` at this price (``batch``: at the Batch API's price)."""
        prompt, output = self.input, self.output
        if batch:
            prompt = self.batch_input if self.batch_input is not None else prompt * discount
            output = self.batch_output if self.batch_output is not None else output * discount
        return (usage.prompt_tokens * prompt + usage.completion_tokens * output) / PER_TOKENS


@dataclass(frozen=True)
class PriceTable(Mapping[str, Price]):
    """Prices per model, with the date they were right on (see the module docstring)."""

    models: Mapping[str, Price]
    as_of: str = ""
    source: str = ""
    batch_discount: float = 0.5
    overridden: frozenset[str] = field(default_factory=frozenset)  # names not from as_of

    def __getitem__(self, model: str) -> Price:
        return self.models[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def lookup(self, model: str | None) -> Price | None:
        """The price of ``model`` (or of the model a dated snapshot name belongs to)."""
        if not model:
            return None
        found = self.models.get(model)
        if found is None:
            base = _DATED.sub("", model)
            found = self.models.get(base) if base != model else None
        return found

    def cost(self, model: str | None, usage: Usage, *, batch: bool = False) -> float | None:
        """USD for ``usage`` of ``model``; None when the table has no price for it."""
        price = self.lookup(model)
        if price is None:
            return None
        return price.cost(usage, batch=batch, discount=self.batch_discount)

    def with_overrides(self, overrides: Mapping[str, Any] | None) -> PriceTable:
        """This table with some models' prices replaced or added."""
        if not overrides:
            return self
        extra = read_prices(overrides)
        return PriceTable(
            {**self.models, **extra},
            as_of=self.as_of,
            source=self.source,
            batch_discount=self.batch_discount,
            overridden=self.overridden | frozenset(extra),
        )

    def describe(self, model: str | None) -> str:
        """Where the price of ``model`` comes from, in one line."""
        price = self.lookup(model)
        if price is None:
            return f"no price for model {model!r}: give one with orchestra_nb.set_prices"
        base = model if model in self.models else _DATED.sub("", model or "")
        when = "your price" if base in self.overridden else f"list price of {self.as_of}"
        return f"{model}: ${price.input:g} in / ${price.output:g} out per 1M tokens ({when})"


@functools.cache
def shipped_prices() -> PriceTable:
    """The table that comes with the package."""
    raw = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    return PriceTable(
        read_prices(raw["models"]),
        as_of=str(raw["as_of"]),
        source=str(raw.get("source", "")),
        batch_discount=float(raw.get("batch_discount", 0.5)),
    )


PRICES_AS_OF = "2025-08-07"  # kept equal to data/prices.json's as_of (a test checks)

_process_overrides: dict[str, Price] = {}


def set_prices(prices: Mapping[str, Any] | str | os.PathLike[str] | None) -> None:
    """Override or add model prices for this process (USD per 1M tokens).

    ``prices``: ``{"model": {"input": 0.5, "output": 1.5}}`` (or ``(0.5, 1.5)``), or
    the path of a JSON file holding that; ``None`` forgets every override.
    ``ConfigError`` names what is wrong with a bad entry.
    """
    if prices is None:
        _process_overrides.clear()
        return
    _process_overrides.update(read_prices(prices))


def current_prices(overrides: Mapping[str, Any] | None = None) -> PriceTable:
    """The prices in force: shipped, then ``ORCHESTRA_PRICES``, then ``set_prices``,
    then ``overrides``."""
    table = shipped_prices()
    env = os.environ.get("ORCHESTRA_PRICES")
    if env:
        table = table.with_overrides(_env_prices(env))
    if _process_overrides:
        table = table.with_overrides(_process_overrides)
    return table.with_overrides(overrides)


@functools.lru_cache(maxsize=4)
def _env_prices(path: str) -> dict[str, Price]:
    return read_prices(Path(path))


def price_of(
    model: str | None,
    usage: Usage,
    *,
    batch: bool = False,
    prices: Mapping[str, Any] | None = None,
) -> float | None:
    """USD that ``usage`` of ``model`` costs (``batch``: through the Batch API), at the
    prices in force; None when there is no price for the model."""
    return current_prices(prices).cost(model, usage, batch=batch)


def read_prices(source: Mapping[str, Any] | str | os.PathLike[str]) -> dict[str, Price]:
    """Prices from a mapping or a JSON file, checked; ``ConfigError`` names a bad entry."""
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"prices file {path}: cannot read it ({exc.strerror})") from None
        except ValueError as exc:
            raise ConfigError(f"prices file {path}: not JSON ({exc})") from None
        if isinstance(data, Mapping) and isinstance(data.get("models"), Mapping):
            data = data["models"]
        if not isinstance(data, Mapping):
            raise ConfigError(f'prices file {path}: expected {{"MODEL": {{"input": .., ...}}}}')
        source = data
    out = {}
    for model, entry in source.items():
        out[str(model)] = _price(str(model), entry)
    return out


def _price(model: str, entry: Any) -> Price:
    if isinstance(entry, Price):
        return entry
    try:
        if isinstance(entry, Mapping):
            unknown = set(entry) - {"input", "output", "batch_input", "batch_output"}
            if unknown:
                raise ConfigError(f"unknown field(s) {', '.join(sorted(map(str, unknown)))}")
            return Price(**entry)
        if isinstance(entry, list | tuple) and len(entry) == 2:
            return Price(*entry)
        raise ConfigError(
            f'expected {{"input": USD, "output": USD}} per 1M tokens or (input, output), '
            f"not {entry!r}"
        )
    except (ConfigError, TypeError) as exc:
        raise ConfigError(f"price of {model!r}: {exc}") from None


def _is_amount(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value >= 0
    )


def format_usd(amount: float | None) -> str:
    """``$1.23``, ``$0.084``, ``$0.0012``, ``<$0.0001``; ``?`` when unknown."""
    if amount is None:
        return "?"
    if amount == 0:
        return "$0"
    if amount < 0.0001:
        return "<$0.0001"
    if amount >= 1:
        return f"${amount:,.2f}"
    if amount >= 0.01:
        return f"${amount:.3f}".rstrip("0").rstrip(".") if amount < 0.1 else f"${amount:.2f}"
    return f"${amount:.4f}".rstrip("0").rstrip(".")


def format_tokens(count: float) -> str:
    """``950``, ``42k``, ``1.2M``: a token count as people say it."""
    if count < 1000:
        return f"{count:.0f}"
    if count < 1_000_000:
        return f"{count / 1000:.0f}k" if count >= 10_000 else f"{count / 1000:.1f}k"
    return f"{count / 1_000_000:.1f}M"
