"""Rebuild the demo recordings and the notebooks' saved outputs.

1. Serve the example answers in ``demo_answers.py`` from an OpenAI-compatible
   server on loopback (the same one the tests use).
2. Execute each notebook that talks to an LLM in record mode
   (``ORCHESTRA_DEMO_LLM=record:recordings/<name>.json``): the real ``openai``
   client asks the loopback server, and every answer is written to the file.
   Then the README's notebook example, which registers no Python functions (so
   its planning prompt differs), is recorded into the market-research file too.
3. Execute every notebook offline (replay, as ``make test`` and a reader do)
   and save the outputs in place; the notebooks that need Redis get a private
   ``redis-server`` through ``REDIS_URL``, as under ``make test``.

    python scripts/make_recordings.py              # all of it
    python scripts/make_recordings.py --outputs    # only step 3
    python scripts/make_recordings.py --only 06_human_in_the_loop.ipynb   # one notebook

To record your own model instead, run a notebook with
``ORCHESTRA_DEMO_LLM=record:recordings/<name>.json`` and ``OPENAI_API_KEY`` (or
``OPENAI_BASE_URL``) set: prompts it has no answer for go to your model.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTE = "example answers written for the demo (scripts/demo_answers.py), not a model's output"
RECORDED = {  # notebook -> its recording
    "01_quickstart.ipynb": "recordings/quickstart.json",
    "02_market_research.ipynb": "recordings/market_research.json",
    "06_human_in_the_loop.ipynb": "recordings/human_in_the_loop.json",
}
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


# The README's example ("In a notebook"): nothing imported, so no Python functions.
README_CELLS = [
    "%load_ext orchestra_nb",
    '%%orchestrate --name report --llm "record:recordings/market_research.json"'
    " --store memory:// --run --wait\n"
    "Write a market research report on solid-state batteries for EV makers",
    'assert report.run.state == "finished", report.status',
]


def execute(name: str, env: dict[str, str]) -> None:
    import nbformat

    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    run_notebook(nb, env)
    nbformat.write(nb, path)
    print(f"executed {name}")


def run_notebook(nb: object, env: dict[str, str]) -> None:
    """Execute ``nb`` in place in a fresh kernel in notebooks/, with ``env`` set."""
    from nbclient import NotebookClient

    saved = dict(os.environ)
    for key, value in env.items():
        if value:
            os.environ[key] = value
        else:
            os.environ.pop(key, None)
    try:
        client = NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def mark_as_examples(path: Path) -> None:
    """Give a recording the note every report of a replayed run quotes."""
    import json

    data = json.loads(path.read_text(encoding="utf-8"))
    data["note"] = NOTE
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")


def main() -> None:
    from demo_answers import answer

    from tests.support.llm_server import LLMServer, Reply

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outputs", action="store_true", help="only re-execute, offline")
    parser.add_argument("--only", action="append", metavar="NOTEBOOK", help="just this one")
    args = parser.parse_args()
    chosen = set(args.only or [])

    from tests.support.redis_server import RedisServer

    offline = {"ORCHESTRA_DEMO_LLM": "", "OPENAI_API_KEY": "", "OPENAI_BASE_URL": ""}
    if not args.outputs:

        def respond(request: dict) -> Reply:
            planning = "response_format" in request or "You plan work" in str(
                request["messages"][0]
            )
            return Reply(content=answer(request["messages"], planning=planning))

        with LLMServer(respond) as server:
            recording_env = {
                "OPENAI_BASE_URL": server.url,
                "OPENAI_API_KEY": "demo",
                "ORCHESTRA_MODEL": "demo-answers",
            }
            for name, recording in RECORDED.items():
                if chosen and name not in chosen:
                    continue
                (NOTEBOOKS / recording).unlink(missing_ok=True)
                execute(name, {**recording_env, "ORCHESTRA_DEMO_LLM": f"record:{recording}"})
                mark_as_examples(NOTEBOOKS / recording)
            import nbformat

            readme = nbformat.v4.new_notebook()
            readme.cells = [nbformat.v4.new_code_cell(source) for source in README_CELLS]
            run_notebook(readme, recording_env)
            print("recorded the README's notebook example")
    redis = RedisServer().start()
    try:
        for name in sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")):
            if not chosen or name in chosen:
                execute(name, {**offline, "REDIS_URL": redis.url})
    finally:
        redis.close()


if __name__ == "__main__":
    main()
