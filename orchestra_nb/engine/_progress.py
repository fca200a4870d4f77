"""A progress bar for runs started from scripts and terminals (the widget covers notebooks).

The bar reads the run's counts on a timer (every 0.1 s) instead of hearing every
event, so it costs the same whether a run has ten tasks or ten thousand. It
shows what really happened: finished tasks (done, cached, failed, skipped)
advance it, cancelled ones do not, so an interrupted run does not look complete.
"""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Any

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
    """A tqdm bar on stderr that follows one run until it ends."""

    def __init__(self, run: Run) -> None:
        from tqdm.auto import tqdm

        self.run = run
        self.bar: Any = tqdm(
            total=len(run.status), desc=f"run {run.id}", unit="task", leave=True, file=sys.stderr
        )
        self._handle: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._tick()
        run.add_done_callback(self._close)

    def _tick(self) -> None:
        self._update()
        self._handle = self._loop.call_later(REFRESH_EVERY, self._tick)

    def _update(self) -> None:
        p = self.run.progress()
        bar = self.bar
        bar.n = p.done + p.cached + p.failed + p.skipped
        parts = [f"failed={p.failed}"]
        if p.cancelled:
            parts.append(f"cancelled={p.cancelled}")
        if p.tokens:
            parts.append(f"tokens={p.tokens:,}")
        bar.set_postfix_str(" ".join(parts), refresh=False)
        bar.refresh()

    def _close(self, run: Run) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._update()
        self.bar.close()
