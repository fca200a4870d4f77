"""The ``orchestra-nb`` command: plan a goal, draw a plan, run it, resume it, write its report.

Each subcommand is a thin wrapper over the library; user errors print one line
on stderr and exit with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import OrchestraError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestra-nb",
        description="Plan a goal into a task graph with an LLM, run it, cache every result.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    plan = sub.add_parser("plan", help="ask the LLM to break GOAL into a plan; print its JSON")
    plan.add_argument("goal", help="what the plan should achieve")
    _llm_options(plan)
    plan.add_argument("--max-tasks", type=int, default=12, help="most subtasks allowed")
    plan.add_argument("--attempts", type=int, default=3, help="answers to try before giving up")
    plan.add_argument("-o", "--output", type=Path, help="write the plan here instead of stdout")
    return parser


def _llm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm",
        help="replay:PATH (offline recordings), record:PATH, openai[:MODEL], ollama:MODEL; "
        "default: OPENAI_API_KEY / OPENAI_BASE_URL from the environment",
    )
    parser.add_argument("--model", help="model name (default: ORCHESTRA_MODEL or gpt-4o-mini)")


def _make_llm(args: argparse.Namespace) -> Any:
    from .llm import llm_from_spec

    return llm_from_spec(args.llm, model=args.model)


async def _plan(args: argparse.Namespace) -> int:
    from ._decompose import decompose

    graph = await decompose(
        args.goal, llm=_make_llm(args), max_tasks=args.max_tasks, max_attempts=args.attempts
    )
    text = json.dumps(graph.to_plan(), indent=2, ensure_ascii=False)
    if args.output:
        graph.save(args.output)
        print(f"wrote {len(graph)} tasks to {args.output}", file=sys.stderr)
    else:
        print(text)
    return 0


_COMMANDS = {"plan": _plan}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_COMMANDS[args.command](args))
    except OrchestraError as exc:
        print(f"orchestra-nb: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("orchestra-nb: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
