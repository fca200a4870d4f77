"""Prices, token counts and estimates: what a run will cost before it runs.

Token counts are checked against counts made by hand from the model's
tokenizer (o200k_base for gpt-4o-mini): the system prompt for goal "Test" is 47
tokens, "## Step: Hi" 4, and every chat message adds 3 plus its role (1), every
request 3 for the reply.
"""

from __future__ import annotations

import gzip
import json
import threading

import pytest

import orchestra_nb as onb
from orchestra_nb import _cost, _tokens
from orchestra_nb._cost import Price, current_prices, format_usd, price_of, set_prices
from orchestra_nb._errors import ConfigError
from orchestra_nb._tokens import tokenizer_for
from orchestra_nb.llm import Usage

SYSTEM = 47  # tokens of SYSTEM_PROMPT for goal "Test" (o200k_base)
OVERHEAD = 3 + (3 + 1) + (3 + 1)  # reply priming; system and user messages with their roles


@pytest.fixture(autouse=True)
def _no_price_overrides(monkeypatch):
    monkeypatch.delenv("ORCHESTRA_PRICES", raising=False)
    set_prices(None)
    yield
    set_prices(None)


# --- tokens ---------------------------------------------------------------------------------


def test_counts_with_the_models_own_tokenizer():
    mini = tokenizer_for("gpt-4o-mini")
    assert (mini.encoding, mini.exact) == ("o200k_base", True)
    assert mini.count("hello world") == 2  # "hello", " world"
    assert mini.count("## Step: Hi") == 4  # "##", " Step", ":", " Hi"
    assert mini.count("") == 0
    # one user message: 3 for the message, 1 for "user", 2 for the text, 3 for the reply
    assert mini.count_messages([{"role": "user", "content": "hello world"}]) == 9
    old = tokenizer_for("gpt-4-0613")
    assert (old.encoding, old.exact) == ("cl100k_base", True)
    assert old.count("hello world") == 2
    assert tokenizer_for("gpt-4o-mini-2024-07-18").encoding == "o200k_base"


def test_other_models_are_counted_approximately_and_say_so():
    llama = tokenizer_for("llama3.1")
    assert not llama.exact
    assert llama.label == "≈ o200k_base"
    assert llama.count("hello world") == 2


def test_the_shipped_encodings_are_openais_files(tmp_path, monkeypatch):
    for name in ("o200k_base", "cl100k_base"):
        ranks = _tokens._ranks(name)
        assert len(ranks) > 100_000
    data = gzip.decompress((_tokens.DATA / "cl100k_base.tiktoken.gz").read_bytes())
    tampered = data.replace(b" 0\n", b" 1\n", 1)
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(tampered))
    monkeypatch.setattr(_tokens, "DATA", tmp_path)
    with pytest.raises(RuntimeError, match="is not OpenAI's cl100k_base file"):
        _tokens._ranks("cl100k_base")


# --- prices ---------------------------------------------------------------------------------


def test_price_of_a_known_model_per_million_tokens():
    assert price_of("gpt-4o-mini", Usage(1_000_000, 0)) == pytest.approx(0.15)
    assert price_of("gpt-4o-mini", Usage(0, 1_000_000)) == pytest.approx(0.60)
    assert price_of("gpt-4o-mini", Usage(2000, 1000)) == pytest.approx(0.0003 + 0.0006)
    assert price_of("gpt-4o-mini", Usage(2000, 1000), batch=True) == pytest.approx(0.00045)
    assert price_of("gpt-4o-mini-2024-07-18", Usage(1_000_000, 0)) == pytest.approx(0.15)
    assert price_of("gpt-4o", Usage(1_000_000, 0)) == pytest.approx(2.5)  # not gpt-4o-mini's
    assert price_of("llama3.1", Usage(1000, 1000)) is None
    assert price_of(None, Usage(1, 1)) is None


def test_the_table_is_dated_and_the_date_is_documented():
    raw = json.loads(_cost.PRICES_FILE.read_text())
    assert raw["as_of"] == _cost.PRICES_AS_OF == current_prices().as_of
    assert "gpt-4o-mini" in current_prices()


def test_prices_can_be_overridden_for_the_process_a_file_or_a_call(tmp_path, monkeypatch):
    set_prices({"llama3.1": (0.0, 0.0), "gpt-4o-mini": {"input": 1.0, "output": 2.0}})
    assert price_of("llama3.1", Usage(5000, 5000)) == 0.0
    assert price_of("gpt-4o-mini", Usage(1_000_000, 1_000_000)) == pytest.approx(3.0)
    assert "your price" in current_prices().describe("gpt-4o-mini")
    set_prices(None)
    assert price_of("gpt-4o-mini", Usage(1_000_000, 0)) == pytest.approx(0.15)
    assert "list price of 2025-08-07" in current_prices().describe("gpt-4o-mini")
    file = tmp_path / "prices.json"
    file.write_text(json.dumps({"models": {"my-model": {"input": 4, "output": 8}}}))
    monkeypatch.setenv("ORCHESTRA_PRICES", str(file))
    assert price_of("my-model", Usage(1_000_000, 0)) == pytest.approx(4.0)
    assert price_of("my-model", Usage(1_000_000, 0), prices={"my-model": (1, 1)}) == 1.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"input": -1, "output": 1}, "price input must be a number of USD per 1M tokens"),
        ({"input": 1}, "price of 'm'"),
        ({"input": 1, "output": 1, "cached": 1}, "unknown field(s) cached"),
        ("cheap", "expected"),
        ((1, float("nan")), "price output must be"),
    ],
)
def test_a_bad_price_is_a_one_line_config_error(entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as exc:
        set_prices({"m": entry})
    assert "\n" not in str(exc.value)


def test_a_bad_prices_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"prices file .*: cannot read it"):
        set_prices(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(ConfigError, match="not JSON"):
        set_prices(tmp_path / "bad.json")


def test_amounts_read_as_people_write_them():
    assert [format_usd(x) for x in (0, 0.00002, 0.00027, 0.084, 0.08, 0.92, 1.5, 1234.5)] == [
        "$0",
        "<$0.0001",
        "$0.0003",
        "$0.084",
        "$0.08",
        "$0.92",
        "$1.50",
        "$1,234.50",
    ]
    assert Price(1, 2).cost(Usage(1_000_000, 1_000_000), batch=True) == pytest.approx(1.5)


# --- estimates --------------------------------------------------------------------------------

PLAN = {
    "goal": "Test",
    "subtasks": [
        {"id": "a", "name": "Hi", "params": {"max_tokens": 100}},
        {
            "id": "b",
            "name": "Summarize",
            "description": "One line.",
            "dependencies": ["a"],
            "estimated_time": 2,
        },
        {"id": "c", "name": "Count", "kind": "python", "function": "words", "dependencies": ["b"]},
    ],
}


def words(b):
    return len(str(b).split())


def model(url: str = "http://127.0.0.1:9/v1") -> onb.OpenAILLM:
    return onb.OpenAILLM("gpt-4o-mini", base_url=url, api_key="k", max_tokens=300)


async def test_estimate_counts_each_prompt_as_the_llm_action_builds_it(tmp_path):
    store = f"sqlite:///{tmp_path}/never.db"
    est = await onb.estimate(PLAN, llm=model(), store=store, functions={"words": words})
    a, b, c = (est.tasks[t] for t in "abc")
    assert a.prompt_tokens == OVERHEAD + SYSTEM + 4
    assert (a.output_tokens, a.basis) == (100, "max_tokens")  # the task's own max_tokens
    # b's input is not computed yet: it stands in at a's expected output (100 tokens)
    # after "## Step: Summarize\n\nOne line.\n\n## Results of earlier steps\n\n### Hi\n" (19)
    assert b.prompt_tokens == OVERHEAD + SYSTEM + 19 + 100
    assert (b.output_tokens, b.basis) == (300, "default")  # 500, within the client's 300
    assert (c.tokens, c.usd, c.basis) == (0, 0.0, "no LLM")
    assert est.tokens == (62 + 100) + (177 + 300)
    assert est.usd == pytest.approx(((62 + 177) * 0.15 + 400 * 0.60) / 1e6)
    assert est.minutes == pytest.approx(0.5 + 2 + 0.05)  # the critical path a -> b -> c
    assert est.critical_path == ("a", "b", "c")
    assert str(est) == "≈ 639 tokens · ≈ $0.0003 · ≈ 3 min"
    assert est.tokenizer == "o200k_base"
    assert not (tmp_path / "never.db").exists()  # an estimate creates no store
    table = est.table()
    assert "total" in table and "max_tokens" in table and "o200k_base" in table
    assert json.dumps(est.to_dict())


async def test_cached_tasks_cost_nothing_and_real_inputs_count(llm_server, tmp_path):
    store = onb.open_store(f"sqlite:///{tmp_path}/r.db")
    llm = model(llm_server.url)
    run = await onb.run(PLAN, llm=llm, store=store, functions={"words": words})
    assert run.ok
    est = await onb.estimate(PLAN, llm=llm, store=store, functions={"words": words})
    assert est.cached == 3 and est.tokens == 0 and est.usd == 0 and est.minutes == 0
    assert str(est) == "≈ 0 tokens · ≈ $0 · ≈ 0 s; 3 tasks cached"

    edited = json.loads(json.dumps(PLAN))
    edited["subtasks"][1]["description"] = "Two lines."
    est = await onb.estimate(edited, llm=llm, store=store, functions={"words": words})
    assert [t.cached for t in est.tasks.values()] == [True, False, False]
    b = est.tasks["b"]
    # a's stored answer "Answer: ## Step: Hi" is b's input now: 25 tokens with the rest
    assert b.prompt_tokens == OVERHEAD + SYSTEM + 25
    # the store's history: answers of 4 and 6 tokens (the server's usage), median 5
    assert (b.output_tokens, b.basis) == (5, "history")
    assert str(est).endswith("; 1 task cached")
    refreshed = await onb.estimate(
        PLAN, llm=llm, store=store, functions={"words": words}, refresh=True
    )
    assert refreshed.cached == 0
    await store.close()


async def test_estimate_without_a_price_says_the_cost_is_unknown():
    llm = onb.OpenAILLM("llama3.1", base_url="http://127.0.0.1:9/v1", max_tokens=300)
    plan = {"subtasks": [{"id": "a", "name": "Hi"}]}
    est = await onb.estimate(plan, llm=llm, store="memory://")
    assert est.usd is None
    assert "cost unknown" in str(est)
    assert est.tokenizer == "≈ o200k_base"
    assert "no price for model 'llama3.1'" in est.table()


async def test_estimate_refuses_what_run_refuses():
    with pytest.raises(onb.RunError, match="needs the Python function 'missing'"):
        await onb.estimate(
            {"subtasks": [{"id": "a", "kind": "python", "function": "missing"}]},
            store="memory://",
        )


async def test_counting_happens_off_the_event_loop(monkeypatch):
    seen = []
    original = _tokens.Tokenizer.count_messages

    def spy(self, messages):
        seen.append(threading.current_thread() is threading.main_thread())
        return original(self, messages)

    monkeypatch.setattr(_tokens.Tokenizer, "count_messages", spy)
    plan = {"subtasks": [{"id": f"t{i}", "name": f"Step {i}"} for i in range(50)]}
    est = await onb.estimate(plan, llm=model(), store="memory://")
    assert len(est.tasks) == 50
    assert seen and not any(seen)
