"""A progress bar for runs started from scripts and terminals (the widget covers notebooks).

The bar reads the run's counts on a timer (every 0.1 s) instead of hearing every
event, so it costs the same whether a run has ten tasks or ten thousand. It
counts honestly: tasks that ended on their own — done, cached, failed, or
skipped because a dependency failed — advance it; tasks cancelled because the
run was interrupted do not, so a run stopped after 2 of 8 tasks ends the bar at
2/8 with ``cancelled=6`` beside it, not at 100 %. It is drawn once the run has
started: a run that cannot start (an unreachable store, a lease held elsewhere)
ends with its error alone. Beside the counts it shows the run's resource use
(``run.resources().line``: tokens a minute, money against the budget, tasks in
flight per pool, memory).
"""

from __future__ import annotations

import asyncio
import sys
from typing import IO, TYPE_CHECKING, Any

from .._text import printable

if TYPE_CHECKING:
    from ._run import Run

REFRESH_EVERY = 0.1  # seconds


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where the widget shows progress instead)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    get = getattr(shell, "get_ipython", None)
    ip = get() if get else None
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


def wants_bar(progress: bool | None) -> bool:
    """``progress=None`` means: a bar when stderr is a terminal and this is not a notebook."""
    if progress is not None:
        return progress
    return sys.stderr.isatty() and not in_notebook()


class ProgressBar:
    """A tqdm bar on ``file`` (stderr by default) that follows one run until it ends.

    ``tokens_label`` names the token count ("replayed tokens" when no model ran).
    """

    def __init__(
        self, run: Run, *, file: IO[str] | None = None, tokens_label: str = "tokens"
    ) -> None:
        self.run = run
        self.file = file if file is not None else sys.stderr
        self.tokens_label = tokens_label
        self.bar: Any = None
        self.paused = False  # a question is on the terminal: do not draw over it
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = None
        self._tick()
        run.add_done_callback(self._close)

    def _tick(self) -> None:
        self._update()
        self._handle = self._loop.call_later(REFRESH_EVERY, self._tick)

    def _update(self) -> None:
        run = self.run
        if self.paused:
            return
        if self.bar is None:
            events = run.events
            if not events or events[0].kind != "run_started":
                return  # not started (yet): a run that starts says so first
            from tqdm.auto import tqdm

            self.bar = tqdm(
                total=len(run.status),
                desc=f"run {printable(run.id, one_line=True)}",
                unit="task",
                leave=True,
                file=self.file,
            )
        p = run.progress()
        self.bar.total = p.total  # a growing plan adds tasks
        self.bar.n = p.done + p.cached + p.failed + p.skipped
        parts = [f"failed={p.failed}"]
        if p.batched:
            parts.append(f"batched={p.batched}")
        if p.cancelled:
            parts.append(f"cancelled={p.cancelled}")
        if p.tokens:
            parts.append(f"{self.tokens_label}={p.tokens:,}")
        parts.append(run.resources().line)  # tokens/min, money and budget, pools, memory
        self.bar.set_postfix_str(" ".join(parts), refresh=False)
        self.bar.refresh()

    def write(self, text: str) -> None:
        """Print a line above the bar (which is drawn again below it)."""
        if self.bar is not None and not self.paused:
            self.bar.write(text, file=self.file)
        else:
            print(text, file=self.file, flush=True)

    def pause(self) -> None:
        """Take the bar off the terminal until ``resume`` (a question is being asked)."""
        self.paused = True
        if self.bar is not None:
            self.bar.clear()

    def resume(self) -> None:
        self.paused = False
        self._update()

    def _close(self, run: Run) -> None:
        self.close()

    def close(self) -> None:
        """Draw the last counts and stop following the run (safe to call twice)."""
        self.paused = False
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._update()  # a run that ended between two ticks still shows how it ended
        if self.bar is not None:
            self.bar.close()
            self.bar = None
