"""Files written from stored or model-written data stay inside the output folder, one per task."""

from __future__ import annotations

import json

from orchestra_nb.store import open_store
from tests.security.conftest import tree
from tests.support.cli import run_cli


async def test_a_planted_run_record_writes_nothing_outside_the_output_folder(shared_url, tmp_path):
    """Someone with write access to the store plants a run whose record lists "tasks" named
    like paths; ``orchestra-nb report`` must refuse it and write nothing anywhere."""
    work = tmp_path / "work"
    work.mkdir()
    absolute = tmp_path / "elsewhere" / "pwned"
    planted = open_store(shared_url)
    await planted.put_many(
        {"k-ok": "a fine result", "k-rel": "ATTACK 1", "k-abs": "ATTACK 2", "k-up": "ATTACK 3"}
    )
    await planted.save_run(
        "evil",
        {
            "run_id": "evil",
            "state": "finished",
            "goal": "quarterly report",
            "graph": json.dumps({"subtasks": [{"id": "a", "name": "A"}]}),
            "keys": {
                "a": "k-ok",
                "../../escaped": "k-rel",
                str(absolute): "k-abs",
                "..": "k-up",
            },
            "options": {},
            "tasks": 1,
        },
    )
    await planted.close()
    before = tree(tmp_path)

    result = run_cli("report", "evil", "--store", shared_url, "-o", "out", cwd=work)

    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("orchestra-nb: error: run 'evil' holds results for")
    assert "not tasks of its plan (a tampered run record?)" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert tree(tmp_path) == before  # nothing written, inside or outside out/
    assert not absolute.exists()
    assert not (tmp_path / "escaped").exists()


async def test_result_files_never_overwrite_each_other(tmp_path):
    """Ids that share a name once an extension is added or case is ignored, Windows device
    names, and a symlink planted where a result goes."""
    functions = tmp_path / "emit.py"
    functions.write_text(
        "import orchestra_nb as onb\n\n"
        "@onb.task_function\n"
        "def emit(task):\n"
        "    if task.id == 'data':\n"
        "        return {'from': task.id}\n"
        "    return 'content of ' + task.id\n"
    )
    ids = ["summary", "summary.txt", "data", "data.json", "Notes", "notes", "con", "report.md"]
    plan = {"subtasks": [{"id": tid, "kind": "python", "function": "emit"} for tid in ids]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    results = tmp_path / "out" / "results"
    results.mkdir(parents=True)
    target = tmp_path / "target.txt"
    target.write_text("must not change")
    (results / "summary.txt").symlink_to(target)

    result = run_cli(
        "run", "plan.json", "--functions", str(functions), "--store",
        f"sqlite:///{tmp_path}/r.db", "--out", "out", cwd=tmp_path,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    files = {p.name: p.read_text() for p in results.iterdir()}
    assert len(files) == len(ids)  # one file per task, none lost to another
    owners = {}
    for name, text in files.items():
        owner = json.loads(text)["from"] if name.endswith(".json") else text.split()[-1]
        owners[owner] = name
    assert sorted(owners) == sorted(ids)
    assert owners["summary"] == "summary.txt"
    assert owners["summary.txt"] == "summary.txt.txt"
    assert owners["data"] == "data.json"
    assert owners["data.json"] == "data.json.txt"
    assert owners["report.md"] == "report.md.txt"
    # names equal but for case would be one file on macOS and Windows: each gets a hash
    assert owners["Notes"].startswith("Notes~") and owners["notes"].startswith("notes~")
    assert owners["con"].startswith("con~")  # a device on Windows, whatever the extension
    assert not (results / "summary.txt").is_symlink()
    assert target.read_text() == "must not change"
    # the same run exported again maps every task to the same file
    again = run_cli("report", _run_id(result.stdout), "--store", f"sqlite:///{tmp_path}/r.db",
                    "-o", "again", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in (tmp_path / "again" / "results").iterdir()) == sorted(files)


def _run_id(stdout: str) -> str:
    line = next(line for line in stdout.splitlines() if line.startswith("run "))
    return line.split()[1].rstrip(":")


def test_file_names_are_distinct_on_case_insensitive_file_systems():
    from orchestra_nb._export import result_stems

    stems = result_stems(["a", "A", "b.txt", "nul", "LPT1.log", "plain"])
    assert stems["b.txt"] == "b.txt" and stems["plain"] == "plain"
    assert len({s.casefold() for s in stems.values()}) == 6
    assert all("~" in stems[t] for t in ("a", "A", "nul", "LPT1.log"))
    assert result_stems(["A", "a"])["a"] == stems["a"]  # stable: the hash is of the id alone


def test_a_results_folder_linking_elsewhere_is_refused(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"subtasks": [{"id": "a", "kind": "report"}]}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results").symlink_to(elsewhere)
    result = run_cli("run", "plan.json", "--store", f"sqlite:///{tmp_path}/r.db",
                     "--out", "out", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert "links out of out; refusing to write through it" in result.stderr
    assert list(elsewhere.iterdir()) == []
