"""A run's structured event log: one JSON object per event, through ``logging``.

``run(..., log="run.jsonl")`` appends every event of the run to that file;
``log=logging.getLogger("myapp.runs")`` hands each to your logger instead (at
INFO, the JSON text as the message and the same object as
``record.orchestra_event``), so it goes wherever your handlers send logs. The
CLI's ``--log FILE`` is the first form.

A file is written by the standard library's ``QueueHandler`` / ``QueueListener``
pair: the event loop only puts records on a queue and a thread writes them, so
logging never holds up a run. The listener stops (and the file is complete)
when the run ends, before ``await run`` returns.

Each line follows ``SCHEMA`` (``orchestra_nb/data/event.schema.json``,
described in docs/events.md):

``schema``, ``ts`` (ISO 8601, UTC), ``run_id``, ``t`` (seconds since the run
started), ``kind``, ``task_id``, ``attempt``, ``error``, ``data`` (the event's
details), and for a task that asked the model, ``usage`` (``prompt_tokens``,
``completion_tokens``, ``usd`` or null when the model has no price).
"""

from __future__ import annotations

import datetime
import json
import logging
import logging.handlers
import os
import queue
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._errors import ConfigError

if TYPE_CHECKING:
    from ._events import Event
    from .engine import Run

SCHEMA = "orchestra-nb.event/1"
SCHEMA_FILE = Path(__file__).parent / "data" / "event.schema.json"
EventLogTarget = str | os.PathLike[str] | logging.Logger | None


def check_log_target(target: EventLogTarget) -> None:
    """``ConfigError`` now (before the run starts) for a log that cannot be written."""
    if target is None or isinstance(target, logging.Logger):
        return
    if not isinstance(target, str | os.PathLike):
        raise ConfigError(f"log must be a file path or a logging.Logger, not {target!r:.60}")
    path = Path(target)
    if path.is_dir():
        raise ConfigError(f"log {path}: is a directory; name a file")
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise ConfigError(f"log {path}: cannot write it ({exc.strerror or exc})") from None


def event_record(event: Event, run: Run) -> dict[str, Any]:
    """The JSON object logged for ``event`` (see the module docstring)."""
    record: dict[str, Any] = {
        "schema": SCHEMA,
        "ts": datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds"),
        "run_id": event.run_id,
        "t": round(event.time, 6),
        "kind": event.kind,
        "task_id": event.task_id,
        "attempt": event.attempt,
        "error": event.error,
        "data": dict(event.data),
    }
    if event.kind == "done" and event.task_id is not None:
        usage = run.usage_by_task.get(event.task_id)
        if usage is not None:
            from ._cost import price_of

            record["usage"] = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "usd": price_of(_model(run), usage, prices=_prices(run)),
            }
    return record


def _model(run: Run) -> str | None:
    source = run.llm_source or {}
    return source.get("model") or None


def _prices(run: Run) -> Any:
    budget = run.options.budget
    return budget.prices if budget is not None else None


def attach_event_log(run: Run, target: EventLogTarget) -> None:
    """Log every later event of ``run`` to ``target`` (a path or a Logger) until it ends.

    Call it once the run has begun (its end is what closes the log) and before the
    loop turns (so no event is missed)."""
    if target is None:
        return
    check_log_target(target)
    listener: logging.handlers.QueueListener | None = None
    if isinstance(target, logging.Logger):
        logger = target
    else:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        writer = logging.FileHandler(Path(target), mode="a", encoding="utf-8")
        writer.setFormatter(logging.Formatter("%(message)s"))
        listener = logging.handlers.QueueListener(records, writer)
        # a Logger of its own, not registered by name: nothing outlives the run
        logger = logging.Logger(f"orchestra_nb.events.{run.id}", logging.INFO)
        logger.propagate = False
        logger.addHandler(logging.handlers.QueueHandler(records))
        listener.start()

    def on_event(event: Event) -> None:
        record = event_record(event, run)
        logger.info(
            json.dumps(record, ensure_ascii=False, default=str),
            extra={"orchestra_event": record},
        )

    unsubscribe = run.subscribe(on_event)

    def close(_run: Run) -> None:
        unsubscribe()
        if listener is not None:
            listener.stop()  # writes what is queued, then the thread ends
            for handler in listener.handlers:
                handler.close()

    run.add_done_callback(close)
