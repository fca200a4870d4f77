"""A process that runs three LLM tasks through the Batch API; a test kills it while it waits.

Usage: python -m tests.support.batch_child LLM_URL STORE_URL RUN_ID
"""

from __future__ import annotations

import asyncio
import sys

import orchestra_nb as onb


def graph() -> onb.TaskGraph:
    return onb.TaskGraph(
        [
            onb.Task("a", name="First half"),
            onb.Task("b", name="Second half"),
            onb.Task("c", name="Both halves", dependencies=("a", "b")),
        ],
        goal="batch restart test",
    )


def llm(url: str) -> onb.BatchLLM:
    return onb.BatchLLM(
        onb.OpenAILLM("test-model", base_url=url, backoff=0.01),
        window=0.05,
        poll_every=0.05,
        max_poll=0.2,
    )


async def main(url: str, store: str, run_id: str) -> None:
    await onb.run(graph(), llm=llm(url), store=store, run_id=run_id, progress=False)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
