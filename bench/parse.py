"""Plan parsing: parse bombs against the mender used before, and the cost of streaming.

Two tables:

1. Hostile answers: ``json_repair.loads`` (what ``from_plan`` ran on broken JSON
   before the scanner replaced it; run in a subprocess with a time limit) against
   ``TaskGraph.from_plan`` now, on the same inputs.
2. Streaming: a plan fed to ``PlanStream`` in 4-character chunks (about a token
   each) against reading it whole, and against re-reading the whole buffer on
   every chunk (what a parser without incremental state has to do), for the
   market-research recording and generated plans of 20 and 60 tasks.

Run: ``.venv/bin/python bench/parse.py`` (``json_repair`` must be installed for
the first table's left column; it is no longer a dependency).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from _common import ROOT, median_time, table

from orchestra_nb import PlanError, PlanStream, TaskGraph
from orchestra_nb._json_text import scan_text

LIMIT = 60.0  # seconds json_repair gets per input

BOMBS = {
    "36 KB of unclosed braces": "{" * 36_000,
    "81 KB of unclosed braces": "{" * 81_000,
    "100k nested brackets": "[" * 100_000,
    "58 KB of unclosed objects": "[" + '{"a": x, ' * 5_800,
    "16 KB of unquoted keys": "{" + "a: b, " * 2_700 + "}",
    "64 KB of unquoted keys": "{" + "a: b, " * 10_700 + "}",
}


def json_repair_time(text: str) -> str:
    code = (
        "import json_repair, sys, time\n"
        "text = sys.stdin.read()\n"
        "t = time.perf_counter()\n"
        "try:\n    json_repair.loads(text)\nexcept Exception as e:\n    print(type(e).__name__)\n"
        "print(time.perf_counter() - t)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=text,
            capture_output=True,
            text=True,
            timeout=LIMIT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"> {LIMIT:.0f} s"
    if done.returncode:
        return "not installed" if "ModuleNotFoundError" in done.stderr else "crashed"
    lines = done.stdout.split()
    seconds = float(lines[-1])
    return f"{seconds:.2f} s" + (f" ({lines[0]})" if len(lines) > 1 else "")


def from_plan_now(text: str) -> tuple[float, str]:
    outcome = ""

    def read() -> None:
        nonlocal outcome
        try:
            outcome = f"{len(TaskGraph.from_plan(text))} tasks"
        except PlanError as exc:
            outcome = str(exc)[:60]

    seconds, _ = median_time(read, 3)
    return seconds, outcome


def bombs_table() -> str:
    rows = []
    for name, text in BOMBS.items():
        before = json_repair_time(text)
        now, outcome = from_plan_now(text)
        rows.append([name, before, f"{now * 1000:.1f} ms", outcome])
    return table(
        ["input", "json_repair (before)", "from_plan now", "outcome now"],
        rows,
        "Hostile answers (median of 3 for from_plan)",
    )


def generated_plan(n: int) -> str:
    tasks = [
        {
            "id": f"task_{i + 1}",
            "name": f"Research part {i + 1}",
            "description": "Collect the figures for this part of the market, compare the "
            "main makers and note every source used, in a short table.",
            "dependencies": [f"task_{j + 1}" for j in (i - 1, i // 2) if 0 <= j < i][:2],
            "estimated_time": 10 + i % 7,
            "kind": "llm",
        }
        for i in range(n)
    ]
    return "Here is the plan:\n```json\n" + json.dumps({"subtasks": tasks}, indent=2) + "\n```"


def streamed(text: str, size: int) -> int:
    stream = PlanStream()
    count = 0
    for i in range(0, len(text), size):
        count += len(stream.feed(text[i : i + size]))
    stream.close()
    return count


def rescanned(text: str, size: int) -> None:
    for end in range(size, len(text) + size, size):
        scan_text(text[:end])


def streaming_table() -> str:
    recording = json.loads((ROOT / "notebooks/recordings/market_research.json").read_text())
    plans = {
        "market research (recording)": next(
            e["response"] for e in recording["entries"] if e.get("schema")
        ),
        "20 tasks": generated_plan(20),
        "60 tasks": generated_plan(60),
    }
    rows = []
    per_char = {}
    for name, text in plans.items():
        tasks = len(TaskGraph.from_plan(text))
        whole, _ = median_time(lambda t=text: TaskGraph.from_plan(t), 5)
        stream, _ = median_time(lambda t=text: streamed(t, 4), 5)
        naive, _ = median_time(lambda t=text: rescanned(t, 4), 1)
        per_char[name] = stream / len(text)
        rows.append(
            [
                name,
                tasks,
                len(text),
                len(text) // 4,
                f"{whole * 1000:.1f}",
                f"{stream * 1000:.1f}",
                f"{stream / whole:.1f}×",
                f"{naive * 1000:.0f}",
                f"{naive / stream:.0f}×",
            ]
        )
    small, large = per_char["20 tasks"], per_char["60 tasks"]
    note = f"stream time per character, 60 vs 20 tasks: {large / small:.2f}× (1.0 = linear)"
    return (
        table(
            [
                "plan",
                "tasks",
                "chars",
                "chunks",
                "whole ms",
                "stream ms",
                "stream/whole",
                "re-scan ms",
                "re-scan/stream",
            ],
            rows,
            "Streaming in 4-character chunks (medians; re-scan: one run)",
        )
        + "\n"
        + note
    )


if __name__ == "__main__":
    started = time.perf_counter()
    print(streaming_table(), end="\n\n", flush=True)
    print(bombs_table())
    print(f"\n({time.perf_counter() - started:.0f} s)")
