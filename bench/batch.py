"""Batch API vs plain requests: a 200-task LLM fan-out under a 60 requests/min rate limit.

Both runs use the real openai client against the loopback OpenAI-protocol server.
The server enforces the rate limit itself (429 with Retry-After beyond 60 chat
completions per minute) and implements the Batch API with a scripted turnaround
(default: 2 minutes from creation to the results, a quick real batch). The
plain run sends 200 requests and waits out the rate limit; the batched run
sends one batch and polls it.

``--scale S`` multiplies every duration the server and the batch client use (the
rate limit's minute, the turnaround, the polling interval) by S, so a run takes
about S of its real time; the table shows the measured seconds and what they
come to at full scale (÷ S). Requests and tokens do not depend on the scale.
Cost is at the shipped prices (``orchestra_nb._cost.price_of``) when this
checkout has them, otherwise at the model's list price below; batched tokens at
the provider's batch discount (``orchestra_nb.llm.BATCH_DISCOUNT``).

    python bench/batch.py [--tasks 200] [--rpm 60] [--turnaround 120] [--scale 0.05]
                          [--repeats 3] [--workers 16]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from _common import ROOT, table

import orchestra_nb as onb
from orchestra_nb import BatchLLM, OpenAILLM, Task, TaskGraph
from orchestra_nb.llm import BATCH_DISCOUNT, Usage

MODEL = "gpt-4o-mini"
#: USD per million tokens (input, output): OpenAI's list price for gpt-4o-mini, used only
#: when the shipped price table (orchestra_nb._cost) is not in this checkout.
LIST_PRICE = {"gpt-4o-mini": (0.15, 0.60)}
ANSWER = "A short answer of about one hundred and fifty tokens. " * 11


def cost(usage: Usage, *, batch: bool) -> tuple[float, str]:
    """USD for ``usage`` of MODEL, and where the price came from."""
    try:
        from orchestra_nb._cost import price_of  # the shipped, dated price table
    except ImportError:
        per_in, per_out = LIST_PRICE[MODEL]
        usd = (usage.prompt_tokens * per_in + usage.completion_tokens * per_out) / 1e6
        return usd * ((1 - BATCH_DISCOUNT) if batch else 1), "list price (no _cost table)"
    return float(price_of(MODEL, usage, batch=batch)), "orchestra_nb._cost"


def fan_out(n: int) -> TaskGraph:
    return TaskGraph(
        [Task(f"q{i}", f"Question {i}", f"Answer question {i} in a paragraph") for i in range(n)],
        goal="a fan-out of short LLM tasks",
    )


def once(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    from tests.support.llm_server import LLMServer, Reply

    scale = args.scale
    server = LLMServer(
        lambda request: Reply(content=ANSWER),
        rate_limit=args.rpm,
        rate_window=60.0 * scale,
        batch_turnaround=args.turnaround * scale,
    )

    async def go() -> tuple[float, onb.Run]:
        plain = OpenAILLM(
            MODEL,
            base_url=server.url,
            api_key="k",
            max_retries=1000,  # the server's 429s are the rate limit at work: wait them out
            timeout=3600,
            max_backoff=60 * scale,
        )
        llm: Any = plain
        if mode == "batch":
            llm = BatchLLM(plain, poll_every=1.0 * scale, max_poll=60.0 * scale)
        started = time.perf_counter()
        run = await onb.run(
            fan_out(args.tasks),
            llm=llm,
            max_workers=args.workers,
            store="memory://",
            progress=False,
        )
        elapsed = time.perf_counter() - started
        await plain.aclose()
        return elapsed, run

    with server:
        elapsed, run = asyncio.run(go())
        assert run.ok, run.errors
        chat = len(server.requests)
        if mode == "batch":
            assert chat == 0, "the batched run sent plain requests"
            assert len(server.batches) == 1, "the batched run made more than one batch"
        return {
            "seconds": elapsed,
            "chat": chat,
            "429": server.rate_limited,
            "batch_calls": server.http_requests - chat,
            "usage": run.usage,
        }


def main() -> None:
    sys.path.insert(0, str(ROOT))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rpm", type=int, default=60, help="chat completions per minute")
    parser.add_argument("--turnaround", type=float, default=120.0, help="batch seconds")
    parser.add_argument("--scale", type=float, default=0.05, help="time scale (0 < S ≤ 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")

    results: dict[str, list[dict[str, Any]]] = {"plain": [], "batch": []}
    for _ in range(args.repeats):  # alternate, so a busy moment hurts both alike
        for mode in results:
            results[mode].append(once(mode, args))

    rows = []
    base_cost = None
    source = ""
    for mode, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        last = runs[-1]
        usd, source = cost(last["usage"], batch=mode == "batch")
        base_cost = usd if base_cost is None else base_cost
        rows.append(
            [
                "plain requests" if mode == "plain" else "Batch API",
                seconds,
                f"{seconds / args.scale / 60:.1f} min",
                statistics.median(r["chat"] for r in runs),
                statistics.median(r["429"] for r in runs),
                statistics.median(r["batch_calls"] for r in runs),
                f"{last['usage'].total_tokens:,}",
                f"${usd:.4f}",
                f"{usd / base_cost:.2f}×",
            ]
        )
    headers = ["mode", "seconds", "≈ full scale", "chat requests", "of them 429",
               "batch API calls", "tokens", "cost", "cost ratio"]  # fmt: skip
    print(
        table(
            headers,
            rows,
            title=f"{args.tasks} LLM tasks, {args.rpm} requests/min, batch turnaround "
            f"{args.turnaround:g} s, time scale {args.scale:g}, median of {args.repeats}; "
            f"model {MODEL}, prices: {source}",
        )
    )


if __name__ == "__main__":
    main()
