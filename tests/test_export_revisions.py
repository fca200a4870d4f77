"""Reports of runs whose plan changed: the appendix lists every revision."""

from __future__ import annotations

import orchestra_nb as onb
from orchestra_nb import Task, TaskGraph
from orchestra_nb._export import export_run, revision_appendix


def plan() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect data", kind="python", function="collect"),
            Task("chart", "Chart", kind="python", function="chart", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("chart",)),
        ],
        goal="a report",
    )


def revised() -> TaskGraph:
    return TaskGraph(
        [
            Task("data", "Collect data", kind="python", function="collect"),
            Task("table", "Table", kind="python", function="table", dependencies=("data",)),
            Task("report", "Report", kind="report", dependencies=("table",)),
        ],
        goal="a report",
    )


def collect():
    return [3, 1, 2]


def chart(data):
    raise ValueError("<script>alert(1)</script> *not* installed")


def table(data):
    return "| n |\n|---|\n" + "\n".join(f"| {n} |" for n in data)


FUNCTIONS = {"collect": collect, "chart": chart, "table": table}


async def replanner(request):
    return revised()


EXPECTED = (
    "---\n\n## Appendix: revisions of the plan\n\n"
    "**Revision 1** (replanned after a failure) — applied\n\n"
    "- reason: task 'chart': ValueError: \\<script\\>alert(1)\\</script\\> \\*not\\* installed\n"
    "- added: `table` (Table)\n"
    "- removed: `chart`\n"
    "- changed: `report` (Report)\n"
)


async def test_the_appendix_lists_each_revision_from_a_live_run_and_from_the_store(tmp_path):
    url = f"sqlite:///{tmp_path}/runs.db"
    run = await onb.run(
        plan(), functions=FUNCTIONS, store=url, on_failure="replan", replanner=replanner,
        run_id="exp-1",
    )  # fmt: skip
    assert run.ok
    assert revision_appendix(run) == EXPECTED
    written = export_run(run, tmp_path / "live")
    text = written["report.md"].read_text()
    assert text.startswith("# Report\n\n## Table\n\n| n |") and text.endswith(EXPECTED)
    html = written["report.html"].read_text()
    assert "Appendix: revisions of the plan" in html
    assert "<script>" not in html and "&lt;script&gt;" in html

    loaded = await onb.rollback("exp-1", store=url)
    assert revision_appendix(loaded) == EXPECTED
    again = export_run(loaded, tmp_path / "loaded")
    assert again["report.md"].read_text() == text


async def test_rejected_and_edited_revisions_say_so_and_plain_runs_have_no_appendix():
    async def unchanged(request):
        return plan()

    run = await onb.run(
        plan(), functions=FUNCTIONS, store="memory://", on_failure="replan", replanner=unchanged
    )
    assert revision_appendix(run).splitlines()[4] == (
        "**Revision 1** (replanned after a failure) — failed: the revised plan is unchanged"
    )
    assert "- added: none" in revision_appendix(run)

    plain = await onb.run(
        TaskGraph([Task("data", kind="python", function="collect")]),
        functions=FUNCTIONS,
        store="memory://",
    )
    assert revision_appendix(plain) == ""

    gated = onb.start(
        TaskGraph([Task("data", "Collect", kind="python", function="collect", approval=True)]),
        functions=FUNCTIONS,
        store="memory://",
    )
    while gated.awaiting_approval != ["data"]:
        await __import__("asyncio").sleep(0.01)
    gated.edit_then_approve("data", name="Collect all")
    await gated
    assert "**Revision 1** (edited by a person) — applied" in revision_appendix(gated)
    assert "- changed: `data` (Collect all)" in revision_appendix(gated)
