"""The report's appendix: tokens and cost per task and in total, "replayed" when no model ran."""

from __future__ import annotations

import json

import orchestra_nb as onb
from orchestra_nb._actions import llm_messages
from orchestra_nb._export import export_run
from tests.support.llm_server import Reply

PLAN = {
    "goal": "Test",
    "subtasks": [
        {"id": "a", "name": "Market | sizing"},
        {"id": "b", "name": "Summary", "dependencies": ["a"]},
        {"id": "p", "kind": "python", "function": "shout", "dependencies": ["b"]},
    ],
}


def shout(b) -> str:
    return str(b).upper()


def table(report: str) -> list[str]:
    start = report.index("## Appendix: tokens and cost")
    return report[start:].splitlines()


async def test_the_appendix_lists_tokens_and_cost_per_task_and_in_total(llm_server, tmp_path):
    usage = iter([(1000, 200), (3000, 400)])

    def answer(request):
        prompt, completion = next(usage)
        return Reply(content="ok", usage={"prompt_tokens": prompt, "completion_tokens": completion})

    llm_server.responder = answer
    store = f"sqlite:///{tmp_path}/r.db"
    llm = onb.OpenAILLM("gpt-4o-mini", base_url=llm_server.url, api_key="k")
    run = await onb.run(PLAN, llm=llm, store=store, functions={"shout": shout}, mode="pipeline")
    written = export_run(run, tmp_path / "out")
    report = written["report.md"].read_text()
    assert table(report) == [
        "## Appendix: tokens and cost",
        "",
        "| task | prompt tokens | output tokens | cost |",
        "|---|---:|---:|---:|",
        "| Market \\| sizing (`a`) | 1,000 | 200 | $0.0003 |",  # 0.00015 + 0.00012
        "| Summary (`b`) | 3,000 | 400 | $0.0007 |",  # 0.00045 + 0.00024
        "| **total** | **4,000** | **600** | **$0.001** |",
        "",
        "Prices: gpt-4o-mini: $0.15 in / $0.6 out per 1M tokens (list price of 2025-08-07).",
    ]
    html = written["report.html"].read_text()
    assert "<h2>Appendix: tokens and cost</h2>" in html and "<table>" in html

    # written later from the store: the same appendix (usage comes from the run's records)
    later = export_run(await onb.rollback(run.id, store=store), tmp_path / "later")
    assert table(later["report.md"].read_text()) == table(report)

    # a run that found everything cached spent nothing
    again = await onb.run(PLAN, llm=llm, store=store, functions={"shout": shout})
    rows = table(export_run(again, tmp_path / "again")["report.md"].read_text())
    assert rows[4:7] == [
        "| Market \\| sizing (`a`) | cached | cached | $0 |",
        "| Summary (`b`) | cached | cached | $0 |",
        "| **total** | **0** | **0** | **$0** |",
    ]


async def test_replayed_answers_are_called_replayed(tmp_path):
    plan = {"goal": "Test", "subtasks": [{"id": "a", "name": "Hi"}]}
    task = onb.TaskGraph.from_plan(plan).tasks["a"]
    messages = llm_messages(task, {}, goal="Test", names={"a": "Hi"})
    recording = tmp_path / "rec.json"
    recording.write_text(json.dumps({"entries": [{"messages": messages, "response": "hello"}]}))
    replay = onb.ReplayLLM(recording, model="gpt-4o-mini")
    run = await onb.run(plan, llm=replay, store="memory://")
    report = export_run(run, tmp_path / "out")["report.md"].read_text()
    rows = table(report)
    assert rows[0] == "## Appendix: tokens and cost (replayed)"
    assert rows[-1] == (
        "Replayed — no model ran: the token counts are the recording's, and the cost is what "
        "they would have cost, not money spent."
    )


async def test_no_appendix_without_llm_tasks(tmp_path):
    run = await onb.run({"subtasks": [{"id": "a"}]}, runner=lambda t, i: "x", store="memory://")
    assert "Appendix" not in export_run(run, tmp_path / "out")["report.md"].read_text()
