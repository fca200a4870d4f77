"""How a run executes: ``RunOptions``, validated here and nowhere else.

Everything in ``RunOptions`` is recorded in the run's header so ``resume`` runs
the rest the same way. The run-level values are the user's limits: a task's own
``timeout`` and ``retries`` (which may come from a model-written plan) can only
make a task stricter, never raise them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from .._actions import DEFAULT_INPUT_BUDGET
from .._errors import RunError

if TYPE_CHECKING:
    from .._plan import Task

MODES = ("pipeline", "parallel", "dag")
"""``pipeline``: one task at a time, in dependency order; ``parallel``: independent
tasks only, all at once within the pool; ``dag``: every task as soon as its
dependencies are done, within the pool."""


@dataclass(frozen=True)
class RunOptions:
    """How a run executes (see ``orchestra_nb.start`` for what each option means)."""

    mode: str = "dag"
    max_workers: int = 5
    retries: int = 0
    backoff: float = 1.0
    max_backoff: float = 30.0
    timeout: float | None = None
    run_timeout: float | None = None
    fail_fast: bool = False
    pools: Mapping[str, int] = field(default_factory=dict)
    input_budget: int = DEFAULT_INPUT_BUDGET
    lease_ttl: float = 30.0
    approval_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RunError(f"unknown mode {self.mode!r}: use one of {', '.join(MODES)}")
        _whole("max_workers", self.max_workers, least=1)
        _whole("retries", self.retries, least=0)
        _whole("input_budget", self.input_budget, least=0)
        for name in ("backoff", "max_backoff"):
            _seconds(name, getattr(self, name), zero=True)
        for name in ("timeout", "run_timeout", "approval_timeout"):
            value = getattr(self, name)
            if value is not None:
                _seconds(name, value, zero=False)
        _seconds("lease_ttl", self.lease_ttl, zero=False)
        for pool, capacity in dict(self.pools).items():
            _whole(f"pool {pool!r}", capacity, least=1)
        object.__setattr__(self, "pools", dict(self.pools))

    @property
    def workers(self) -> int:
        """How many tasks may run at once (1 in pipeline mode)."""
        return 1 if self.mode == "pipeline" else self.max_workers

    def task_timeout(self, task: Task) -> float | None:
        """The task's timeout: its own, but never longer than the run's."""
        own, ceiling = task.timeout, self.timeout
        if own is None or ceiling is None:
            return ceiling if own is None else own
        return min(own, ceiling)

    def task_retries(self, task: Task) -> int:
        """The task's extra attempts: its own, but never more than the run's."""
        return self.retries if task.retries is None else min(task.retries, self.retries)

    def retry_delay(self, attempt: int, jitter: float, retry_after: float | None = None) -> float:
        """Seconds before attempt ``attempt + 1``: exponential backoff with equal jitter
        (``jitter`` in [0, 1)), at least what the server asked for (``Retry-After``),
        never more than ``max_backoff``."""
        delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
        delay *= 0.5 + jitter / 2  # spread retries, keep a floor
        if retry_after is not None and retry_after > delay:
            delay = min(self.max_backoff, retry_after)
        return delay

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, saved: Mapping[str, Any], **overrides: Any) -> RunOptions:
        """Options saved in a run header (unknown or stale fields ignored), with overrides."""
        names = {f.name for f in fields(cls)}
        known = {k: v for k, v in saved.items() if k in names}
        known.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**known)


def _whole(name: str, value: Any, *, least: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        rule = "a positive integer" if least == 1 else f"an integer ≥ {least}"
        raise RunError(f"{name} must be {rule}, not {value!r}")


def _seconds(name: str, value: Any, *, zero: bool) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or value < 0 or (value == 0 and not zero):
        rule = "≥ 0" if zero else "> 0"
        raise RunError(f"{name} must be a number of seconds {rule}, not {value!r}")
