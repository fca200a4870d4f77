"""A person at the terminal while ``orchestra-nb run`` (or ``resume``) follows a run.

``RunConsole`` listens to the run's events and

* prints every revision of the plan as it happens — asked for, proposed,
  applied (tasks added ``+``, removed ``-``, changed ``~``), rejected or failed;
* when a task awaits approval and stdin is a terminal, shows what the task
  would do (``approval_request``: description, prompt, inputs) and asks
  approve / reject / skip for now; a proposed revision is shown as its diff and
  accepted or rejected. One question at a time; the progress bar steps aside
  while it is asked. A skipped task keeps waiting: Enter asks again;
* without a terminal (or once stdin ends), prints for each waiting task the
  ``orchestra-nb approve`` / ``reject`` command that decides it from another
  terminal, and the run keeps waiting (Ctrl-C stops it with the resume hint).

Answers are read with the event loop's reader on the file descriptor — never a
blocking ``readline`` in a thread, which would outlive the run — so a run that
ends while a question is open ends at once. Everything shown comes from plans
and results (LLM output): the CLI's output filter escapes control characters.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._errors import OrchestraError
from ._text import printable, shorten

if TYPE_CHECKING:
    from ._events import Event
    from .engine import Run

PROMPT_LINES = 12  # of an LLM task's prompt shown before asking
REVISION = "revision"


class RunConsole:
    """Follows one run in a terminal (see the module docstring).

    ``write`` prints a line (above the progress bar); ``pause``/``resume`` take the
    bar off the terminal while a question is open; ``decide_elsewhere(task)`` is the
    command that approves a task from another terminal; ``stdin_fd`` is the
    terminal to read answers from (None: ask nothing, print the commands).
    """

    def __init__(
        self,
        run: Run,
        *,
        write: Callable[[str], None],
        decide_elsewhere: Callable[[str], str],
        stdin_fd: int | None = None,
        pause: Callable[[], None] = lambda: None,
        resume: Callable[[], None] = lambda: None,
    ) -> None:
        self.run = run
        self.write = write
        self.decide_elsewhere = decide_elsewhere
        self.pause = pause
        self.resume = resume
        self.fd = stdin_fd
        self.names: dict[str, str] = {tid: t.name for tid, t in run.graph.tasks.items()}
        self.queue: deque[str] = deque()  # task ids, or REVISION, to ask about
        self.skipped: list[str] = []
        self.asking: str | None = None  # what the open question is about
        self.reason_for: str | None = None  # a rejection whose reason is being asked
        self._buffer = b""
        self._reading = False
        self._told: set[str] = set()  # tasks whose command was printed
        self._unsubscribe = run.subscribe(self._on_event)
        if self.fd is not None:
            try:
                asyncio.get_running_loop().add_reader(self.fd, self._readable)
                self._reading = True
            except (NotImplementedError, OSError, ValueError):  # no reader on this loop/fd
                self.fd = None
        for tid in run.awaiting_approval:  # waiting already (a resumed run)
            self._waiting(tid)

    # --- events --------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if event.kind == "awaiting_approval" and event.task_id is not None:
            self._waiting(event.task_id)
        elif event.kind == REVISION:
            self._revision(event.data)
        elif event.kind == "run_finished":
            self.close()

    def _waiting(self, tid: str) -> None:
        if self.fd is None:
            self._tell(tid)
        elif tid not in self.queue and tid != self.asking:
            self.queue.append(tid)
            self._ask_next()

    def _tell(self, tid: str) -> None:
        if tid in self._told:
            return
        self._told.add(tid)
        self.write(
            f"task {tid} awaits approval; decide from another terminal: "
            f"{self.decide_elsewhere(tid)} (or reject)"
        )

    def _revision(self, data: Any) -> None:
        stage = data.get("stage")
        number = data.get("number")
        self._learn_names()
        if stage == "requested":
            self.write(f"revision {number}: asking for a revised plan ({data.get('reason')})")
        elif stage == "proposed":
            self.write(f"revision {number} proposed: {self.describe(data)}")
            if self.fd is not None:
                self.queue.append(REVISION)
                self._ask_next()
            else:
                self.write(
                    "  only the terminal running it can accept a revision: it waits "
                    "(Ctrl-C stops the run; approval_timeout rejects it)"
                )
        elif stage == "applied":
            self.write(f"revision {number} applied: {self.describe(data)}")
        elif stage in ("rejected", "failed"):
            self.write(f"revision {number} {stage}: {data.get('detail') or data.get('reason')}")

    def _learn_names(self) -> None:
        for graph in (self.run.graph, self.run.proposed_graph):
            if graph is not None:
                self.names.update({tid: t.name for tid, t in graph.tasks.items()})

    def describe(self, data: Any) -> str:
        """A revision's changes on one line: ``+ added  - removed  ~ changed``."""
        parts = []
        for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
            for tid in data.get(key) or ():
                name = self.names.get(tid, tid)
                parts.append(f"{mark}{tid}" + (f" ({shorten(name, 40)})" if name != tid else ""))
        return "  ".join(parts) or "no change"

    # --- questions -----------------------------------------------------------------------

    def _ask_next(self) -> None:
        while self.asking is None and self.queue:
            what = self.queue.popleft()
            if what == REVISION:
                if self.run.proposed_revision is None:
                    continue
                self.asking = what
                self.pause()
                self.write("accept the revised plan, or reject it? [a/r] ")
                return
            if what not in self.run.awaiting_approval:
                continue  # decided meanwhile (from another terminal, or timed out)
            self.asking = what
            self.pause()
            self._show(what)
            self.write("approve, reject, or skip for now? [a/r/s] ")
            return
        self.resume()

    def _show(self, tid: str) -> None:
        from ._approval import approval_request

        request = approval_request(self.run, tid)
        head = f"task {tid} awaits approval: {request.name} ({request.kind}"
        head += f", function {request.function})" if request.function else ")"
        self.write(head)
        if request.reason:
            self.write(f"  why: {request.reason}")
        if request.description and request.prompt is None:
            self.write(f"  {request.description}")
        if request.prompt is not None:
            lines = request.prompt.splitlines()
            self.write("  prompt:")
            for line in lines[:PROMPT_LINES]:
                self.write(f"  | {shorten(line, 200) if line.strip() else ''}")
            if len(lines) > PROMPT_LINES:
                self.write(f"  | … {len(lines) - PROMPT_LINES} more lines")
        elif request.inputs:
            self.write("  inputs:")
            for dep, preview in request.inputs.items():
                name = self.names.get(dep, dep)
                self.write(f"    {dep} ({shorten(name, 40)}): {preview}")

    def _readable(self) -> None:
        assert self.fd is not None
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:
            chunk = b""
        if not chunk:  # stdin ended: nobody can answer here any more
            self._stop_reading()
            for tid in [self.asking, *self.queue, *self.skipped]:
                if tid and tid != REVISION and tid in self.run.awaiting_approval:
                    self._tell(tid)
            self.asking, self.queue, self.skipped = None, deque(), []
            self.resume()
            return
        self._buffer += chunk
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            self._answer(line.decode("utf-8", errors="replace").strip())

    def _answer(self, text: str) -> None:
        what = self.asking
        if what is None:  # nothing asked: Enter asks again about skipped tasks
            self.queue.extend(self.skipped)
            self.skipped = []
            self._ask_next()
            return
        try:
            if self.reason_for is not None:
                self.reason_for = None
                self.run.reject(what, reason=text or None)
                self.write(f"rejected {what}" + (f": {printable(text)}" if text else ""))
                closed = True
            elif what == REVISION:
                closed = self._decide_revision(text.lower())
            else:
                closed = self._decide_task(what, text.lower())
        except OrchestraError as exc:  # decided elsewhere meanwhile, or the run ended
            self.write(f"  {exc}")
            closed = True
        if closed:
            self.asking = None
            self._ask_next()

    def _decide_task(self, tid: str, answer: str) -> bool:
        """Act on an answer about a waiting task; whether the question is settled."""
        if answer in ("a", "approve", "y", "yes"):
            self.run.approve(tid)
            self.write(f"approved {tid}")
            return True
        if answer in ("r", "reject", "n", "no"):
            self.reason_for = tid
            self.write("reason (Enter for none): ")
            return False
        if answer in ("s", "skip", ""):
            self.skipped.append(tid)
            self.write(
                f"  {tid} keeps waiting: press Enter to be asked again, or decide from "
                f"another terminal: {self.decide_elsewhere(tid)}"
            )
            return True
        self.write("answer a (approve), r (reject) or s (skip for now): ")
        return False

    def _decide_revision(self, answer: str) -> bool:
        """Act on an answer about a proposed revision; whether the question is settled."""
        if answer in ("a", "accept", "y", "yes"):
            accepting = asyncio.ensure_future(self.run.accept_revision())
            accepting.add_done_callback(_retrieve)
            return True
        if answer in ("r", "reject", "n", "no"):
            self.run.reject_revision("rejected at the terminal")
            return True
        self.write("answer a (accept) or r (reject): ")
        return False

    # --- the end -------------------------------------------------------------------------

    def _stop_reading(self) -> None:
        if self._reading and self.fd is not None:
            asyncio.get_running_loop().remove_reader(self.fd)
        self._reading = False
        self.fd = None

    def close(self) -> None:
        """Stop asking and listening (the run ended, or the command is interrupted)."""
        self._stop_reading()
        self._unsubscribe()
        if self.asking is not None:
            self.asking = None
            self.resume()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # shown by the revision events; do not let asyncio warn
