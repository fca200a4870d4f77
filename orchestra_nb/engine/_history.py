"""Earlier runs, read from a store: ``history`` lists them, ``rollback`` shows one as it ended.

Nothing runs here. A store may be shared, so a record is untrusted: its graph is
parsed off the loop like any plan, only the tasks of that graph are read, and a
record naming results that are not tasks of its plan is refused as tampered.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .._budget import spent_before
from .._errors import UnsafeDataError
from .._kinds import FINAL_STATUSES
from .._plan import TaskGraph
from .._text import printable
from ._options import RunOptions
from ._records import load_record
from ._revisions import revisions_from_header
from ._run import Run
from ._state import RunState

if TYPE_CHECKING:
    from ..store import ResultStore


async def history(
    store: ResultStore | str | None = None, *, limit: int = 50
) -> list[dict[str, Any]]:
    """Earlier runs in a store, newest first (id, state, goal, task count, times)."""
    from ..store import open_store

    opened = open_store(store)
    try:
        return await opened.list_runs(limit=limit)
    finally:
        if opened is not store:
            await opened.close()


async def rollback(
    run_id: str, *, store: ResultStore | str | None = None, signing_key: bytes | str | None = None
) -> Run:
    """An earlier run as it ended: its graph and the results it produced, from the store.

    Nothing runs. Use it to go back to a previous version of a report after edits
    (``rolled.results``), or to display or export it. Only the tasks of the
    recorded graph are read; anything else the record lists is ignored.
    """
    from ..store import open_store

    opened = open_store(store, signing_key=signing_key)
    try:
        record = await load_record(opened, run_id)
        header = record.header
        graph = await asyncio.to_thread(TaskGraph.from_plan, header["graph"])  # untrusted, big
        saved_keys = header.get("keys") or {}
        strangers = [tid for tid in saved_keys if tid not in graph.tasks]
        if strangers:  # only a tampered record names results that are not tasks of its plan
            shown = ", ".join(repr(str(t)) for t in strangers[:3])
            raise UnsafeDataError(
                f"run {run_id!r} holds results for {shown}, which are not tasks of its plan "
                "(a tampered run record?); refusing to read it"
            )
        keys = {tid: str(saved_keys[tid]) for tid in graph.tasks if tid in saved_keys}
        found = await opened.get_many(set(keys.values()))
    finally:
        if opened is not store:
            await opened.close()
    live = RunState(run_id, graph.tasks)
    live.keys = keys
    for tid in graph.tasks:
        entry = record.tasks.get(tid) or {}
        key = keys.get(tid)
        if key in found:
            live.results[tid] = found[key]
            status = "done"
        else:
            ended = entry.get("status")
            status = ended if ended in FINAL_STATUSES - {"done", "cached"} else "pending"
            if entry.get("error"):
                live.errors[tid] = str(entry["error"])
        live.restore(tid, status)
        live.attempts[tid] = int(entry.get("attempts") or 0)
        usage = spent_before({tid: entry})
        if usage.total_tokens:
            live.add_usage(tid, usage)
        if entry.get("start") is not None and entry.get("end") is not None:
            live.timeline[tid] = (float(entry["start"]), float(entry["end"]))
    live.state = str(header.get("state") or "finished")
    live.error = header.get("error")
    live.started_at = header.get("created")
    live.finished_at = header.get("finished")
    options = RunOptions.from_record(header.get("options") or {})
    source = header.get("llm")  # a shared store is untrusted: plain strings only
    llm_source = (
        {str(k): printable(str(v)) for k, v in source.items()} if isinstance(source, dict) else None
    )
    revisions = revisions_from_header(header.get("revisions"))
    return Run(
        graph, live, options=options, store_spec=store, llm_source=llm_source, revisions=revisions
    )
