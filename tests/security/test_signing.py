"""With a signing key, a shared store's entries are authenticated: planted ones are refused."""

from __future__ import annotations

import json

import pytest

import orchestra_nb as onb
from orchestra_nb import Image, Markdown, OpenAILLM, Task, TaskGraph, UnsafeDataError
from orchestra_nb.store import open_store
from tests.support import raw_store
from tests.support.cli import run_cli
from tests.support.llm_server import LLMServer, Reply

TEAM_KEY = "the team's signing key"


def plan() -> TaskGraph:
    return TaskGraph(
        [
            Task("facts", description="Collect the facts"),
            Task("analysis", description="Analyse them", dependencies=("facts",)),
            Task("summary", description="Summarise", dependencies=("analysis",)),
        ],
        goal="A briefing on heat pumps",
    )


async def test_planted_values_under_a_plans_cache_keys_are_not_taken_as_cached(
    shared_url, llm_server
):
    # the attacker runs the victim's (predictable) plan against a server of their own,
    # filling the shared store under exactly the cache keys the victim's run will look up
    with LLMServer(lambda request: Reply(content="POISON: wire the money")) as evil:
        attack = await onb.run(
            plan(), llm=OpenAILLM("gpt-4o-mini", base_url=evil.url, api_key="x"), store=shared_url
        )
    assert attack.ok and all(str(v).startswith("POISON") for v in attack.results.values())
    # ...and forges entries with a key of their own, which the team's key must not accept
    forger = await onb.run(
        plan(),
        runner=lambda task, inputs: "POISON, signed by the wrong key",
        store=shared_url,
        signing_key="the attacker's key",
    )
    assert forger.ok

    llm = OpenAILLM("gpt-4o-mini", base_url=llm_server.url, api_key="k")
    victim = await onb.run(plan(), llm=llm, store=shared_url, signing_key=TEAM_KEY)

    assert victim.status == {"facts": "done", "analysis": "done", "summary": "done"}
    assert len(llm_server.requests) == 3  # every task asked the real model
    assert not any("POISON" in str(v) for v in victim.results.values())
    again = await onb.run(plan(), llm=llm, store=shared_url, signing_key=TEAM_KEY)
    assert set(again.status.values()) == {"cached"}  # the victim's own entries do authenticate
    assert len(llm_server.requests) == 3
    assert again.results == victim.results


VALUES = {
    "text": "plain text",
    "markdown": Markdown("# Title"),
    "bytes": b"\x00\x01",
    "json": {"a": [1, 2.5, None]},
    "image": Image(b"<svg/>", "image/svg+xml"),
    "pickle": {1, 2, 3},  # no codec takes a set: signed pickle
}


def value_for(codec: str):
    if codec == "dataframe":
        import pandas as pd

        return pd.DataFrame({"x": [1, 2]})
    if codec == "figure":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot([1, 2])
        return fig
    return VALUES[codec]


@pytest.mark.parametrize("codec", [*sorted(VALUES), "dataframe", "figure"])
async def test_every_codec_is_authenticated_and_tampering_is_a_miss(shared_url, codec):
    store = open_store(shared_url, signing_key=TEAM_KEY)
    try:
        await store.put("k", value_for(codec), meta={"task_id": "t"})
        await store.put("other", "another result")
        entry = await store.get_entry("k")
        assert entry.codec == codec and entry.meta == {"task_id": "t"}

        original = raw_store.result_fields(shared_url, "k")
        data = original["data"]
        tampered = bytes([data[0] ^ 1]) + data[1:] if data else b"x"
        for change in (
            {"data": tampered},  # another value
            {"meta": json.dumps({"task_id": "t"})},  # the tag stripped
            {"codec": "text" if codec == "bytes" else "bytes"},  # relabelled
            {"created": 1.0},  # the time changed
        ):
            raw_store.write_result_fields(shared_url, "k", {**original, **change})
            assert await store.get_many(["k"]) == {}, change
            assert await store.has_many(["k"]) == set()
            assert await store.get_entry("k") is None
            with pytest.raises(KeyError):
                await store.get("k")
        raw_store.write_result_fields(shared_url, "k", original)
        assert await store.has("k")  # restored exactly: authentic again

        raw_store.copy_result(shared_url, "other", "k")  # a genuine entry moved to another key
        assert await store.get_many(["k", "other"]) == {"other": "another result"}
    finally:
        await store.close()


async def test_a_store_without_the_key_still_reads_signed_entries(shared_url):
    """The key authenticates, it does not encrypt: a reader without it gets the values (but
    never unpickles)."""
    signed = open_store(shared_url, signing_key=TEAM_KEY)
    await signed.put_many({"t": "text", "p": {1, 2}}, meta={"t": {"task_id": "a"}})
    await signed.close()
    plain = open_store(shared_url)
    try:
        assert await plain.get("t") == "text"
        assert (await plain.get_entry("t")).meta == {"task_id": "a"}
        with pytest.raises(UnsafeDataError):
            await plain.get("p")
    finally:
        await plain.close()


async def test_planted_run_records_are_refused(shared_url, tmp_path):
    graph = json.dumps({"subtasks": [{"id": "a"}]})
    keyless = open_store(shared_url)
    await keyless.put("k-a", "PLANTED")
    await keyless.save_run(
        "planted", {"run_id": "planted", "state": "finished", "goal": "planted",
                    "graph": graph, "keys": {"a": "k-a"}, "options": {}, "tasks": 1},
    )  # fmt: skip
    await keyless.close()
    team = open_store(shared_url, signing_key=TEAM_KEY)
    real = await onb.run(
        TaskGraph([Task("a")]), runner=lambda t, i: "genuine", store=team, run_id="genuine"
    )
    assert real.ok
    try:
        with pytest.raises(UnsafeDataError, match=r"record of run 'planted' .* not signed"):
            await onb.rollback("planted", store=team)
        assert [r["run_id"] for r in await onb.history(team)] == ["genuine"]
        # a genuine record edited in place, and task entries planted into it
        header = raw_store.run_header(shared_url, "genuine")
        raw_store.write_run_header(shared_url, "genuine", header.replace("finished", "failed!"))
        with pytest.raises(UnsafeDataError):
            await onb.rollback("genuine", store=team)
        raw_store.write_run_header(shared_url, "genuine", header)
        await keyless_store(shared_url).save_run_tasks("genuine", {"a": {"status": "failed"}})
        record = await team.load_run("genuine")
        assert record is not None and record.tasks == {}  # the planted entry is left out
        assert (await onb.rollback("genuine", store=team)).results == {"a": "genuine"}
    finally:
        await team.close()

    # the command line reads the key from the environment and refuses the same way
    env = {"ORCHESTRA_SIGNING_KEY": TEAM_KEY}
    report = run_cli("report", "planted", "--store", shared_url, "-o", "out", cwd=tmp_path,
                     env=env)  # fmt: skip
    assert report.returncode == 2
    assert "record of run 'planted'" in report.stderr and "not signed" in report.stderr
    assert not (tmp_path / "out").exists()
    runs = run_cli("runs", "--store", shared_url, cwd=tmp_path, env=env)
    assert runs.returncode == 0, runs.stderr
    assert "genuine" in runs.stdout and "planted" not in runs.stdout


def keyless_store(url: str):
    return open_store(url)
