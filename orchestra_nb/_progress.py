"""A terminal progress bar for a run that counts honestly.

The bar advances for tasks that ended on their own — done, cached, failed, or
skipped because a dependency failed. Tasks cancelled because the run was
interrupted do not advance it: a run stopped after 2 of 8 tasks ends the bar at
2/8 with ``cancelled=6`` beside it, not at 100 %.
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from ._text import printable

if TYPE_CHECKING:
    from ._engine import Run
    from ._events import Event

#: Statuses that advance the bar: the task ended on its own.
ENDED = frozenset({"done", "cached", "failed", "skipped"})


class ProgressBar:
    """A tqdm bar on ``file`` (stderr by default) that follows one run's events.

    Counts are kept from the events (constant work per event) and taken again
    from ``run.status`` once, when the run finishes.
    """

    def __init__(
        self, run: Run, *, file: IO[str] | None = None, tokens_label: str = "tokens"
    ) -> None:
        self.run = run
        self.file = file
        self.tokens_label = tokens_label  # "replayed tokens" when no model ran
        self.counts = dict.fromkeys((*sorted(ENDED), "cancelled"), 0)
        self.bar: Any = None  # drawn once the run has started: a run that cannot start
        # (an unreachable store, a lease held elsewhere) ends with its error alone
        self._unsubscribe = run.subscribe(self._on_event)

    def _draw(self) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=len(self.run.status),
            desc=f"run {printable(self.run.id, one_line=True)}",
            unit="task",
            leave=True,
            file=self.file,
        )

    def _on_event(self, event: Event) -> None:
        kind = event.kind
        if kind == "run_started":
            self._draw()
            return
        if self.bar is None:
            return
        if kind in self.counts:
            self.counts[kind] += 1
        elif kind == "run_finished":
            for status in self.counts:
                self.counts[status] = 0
            for status in self.run.status.values():
                if status in self.counts:
                    self.counts[status] += 1
        else:
            return
        ended = sum(self.counts[s] for s in ENDED)
        if ended != self.bar.n:
            self.bar.update(ended - self.bar.n)
        self.bar.set_postfix_str(self._postfix(), refresh=kind == "run_finished")
        if kind == "run_finished":
            self.close()

    def _postfix(self) -> str:
        parts = [f"failed={self.counts['failed']}"]
        if self.counts["cancelled"]:
            parts.append(f"cancelled={self.counts['cancelled']}")
        tokens = self.run.usage.total_tokens
        if tokens:
            parts.append(f"{self.tokens_label}={tokens}")
        return " ".join(parts)

    def close(self) -> None:
        """Draw the last counts and stop following the run (safe to call twice)."""
        self._unsubscribe()
        if self.bar is not None:
            self.bar.close()
