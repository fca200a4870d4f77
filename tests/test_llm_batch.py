"""The Batch API client: the real openai client against the loopback server's batch endpoints."""

from __future__ import annotations

import asyncio

import pytest

from orchestra_nb import BatchLLM, ConfigError, LLMError, OpenAILLM
from orchestra_nb.llm import BATCH_DISCOUNT
from orchestra_nb.llm._batch import ticket_from
from tests.support.llm_server import LLMServer, Reply, default_responder, error_body

KEY = "sk-test-BATCHSECRET-0123456789"


def batch_llm(server: LLMServer, **kwargs) -> BatchLLM:
    kwargs.setdefault("window", 0.02)
    kwargs.setdefault("poll_every", 0.02)
    kwargs.setdefault("max_poll", 0.1)
    inner = OpenAILLM("test-model", base_url=server.url, api_key=KEY, backoff=0.01)
    return BatchLLM(inner, **kwargs)


def fail_on(word: str):
    def responder(request):
        if word in request["messages"][-1]["content"]:
            return Reply(status=400, body=error_body(f"cannot do {word}"))
        return default_responder(request)

    return responder


async def test_calls_made_together_go_in_one_batch(llm_server):
    llm = batch_llm(llm_server)
    queued, tickets = [], []
    answers = await asyncio.gather(
        *(
            llm.send(
                f"question {n}",
                custom_id=f"q{n}",
                on_queued=lambda n=n: queued.append(n),
                on_batched=tickets.append,
            )
            for n in range(3)
        )
    )
    assert [a.text for a in answers] == [f"Answer: question {n}" for n in range(3)]
    assert llm_server.requests == []  # nothing went as a plain request
    assert len(llm_server.batches) == 1 and llm.batches_created == 1
    batch = next(iter(llm_server.batches.values()))
    assert [line["custom_id"] for line in batch.lines] == ["q0", "q1", "q2"]
    assert batch.lines[0]["url"] == "/v1/chat/completions"
    assert batch.lines[0]["body"]["model"] == "test-model"
    assert batch.served[0] == "in_progress" and batch.served[-1] == "completed"
    assert sorted(queued) == [0, 1, 2]
    assert sorted(tickets, key=lambda t: t["custom_id"]) == [
        {"batch_id": batch.id, "custom_id": f"q{n}"} for n in range(3)
    ]
    assert llm.usage == answers[0].usage + answers[1].usage + answers[2].usage
    assert llm.usage.total_tokens > 0
    assert llm.calls == 3
    assert llm.cache_identity() == llm.llm.cache_identity()  # a batched answer is the model's
    assert KEY not in repr(llm)
    assert BATCH_DISCOUNT == llm.discount == 0.5


async def test_the_complete_protocol_and_max_requests(llm_server):
    llm = batch_llm(llm_server, max_requests=2)
    answers = await asyncio.gather(*(llm.complete(f"q{n}") for n in range(5)))
    assert [a.text for a in answers] == [f"Answer: q{n}" for n in range(5)]
    assert sorted(len(b.lines) for b in llm_server.batches.values()) == [1, 2, 2]


async def test_a_failed_line_fails_only_its_call():
    with LLMServer(fail_on("FAIL")) as server:
        llm = batch_llm(server)
        good, bad = await asyncio.gather(
            llm.send("fine", custom_id="good"),
            llm.send("please FAIL", custom_id="bad"),
            return_exceptions=True,
        )
        batch_id = next(iter(server.batches))
    assert good.text == "Answer: fine"
    assert isinstance(bad, LLMError)
    assert str(bad) == (
        f"the LLM server at {llm.host} answered 400 to request bad in batch {batch_id}: "
        "cannot do FAIL"
    )
    assert bad.status == 400


async def test_an_expired_batch_answers_what_it_did_and_says_so_for_the_rest(llm_server):
    llm_server.batch_outcomes.append("expired")
    llm = batch_llm(llm_server)
    outcomes = await asyncio.gather(
        *(llm.send(f"q{n}", custom_id=f"q{n}") for n in range(4)), return_exceptions=True
    )
    batch_id = next(iter(llm_server.batches))
    assert [o.text for o in outcomes[:2]] == ["Answer: q0", "Answer: q1"]
    for n, error in zip((2, 3), outcomes[2:], strict=True):
        assert isinstance(error, LLMError)
        assert str(error) == (
            f"batch {batch_id} expired before request q{n} ran (the provider's 24h window); "
            "retries or resume send it in a new batch, a run without --batch "
            "(llm_batch=False) as a plain request"
        )
    assert llm_server.requests == []  # not sent again as plain requests on its own


async def test_a_failed_batch_fails_every_call_with_the_servers_reason(llm_server):
    llm_server.batch_outcomes.append("failed")
    llm = batch_llm(llm_server)
    outcomes = await asyncio.gather(llm.send("a"), llm.send("b"), return_exceptions=True)
    batch_id = next(iter(llm_server.batches))
    for error in outcomes:
        assert isinstance(error, LLMError)
        assert str(error) == (
            f"batch {batch_id} failed at the LLM server at {llm.host}: "
            "invalid_request: scripted failure"
        )


async def test_a_server_without_the_batch_api_names_the_fallback():
    with LLMServer(batch_api=False) as server:
        llm = batch_llm(server)
        with pytest.raises(ConfigError) as caught:
            await llm.send("hello")
    assert str(caught.value) == (
        f"the LLM server at {llm.host} has no Batch API (/v1/files: 404); run without --batch "
        "(llm_batch=False) to send plain requests"
    )
    assert "\n" not in str(caught.value)


async def test_a_ticket_waits_for_its_batch_instead_of_sending_again(llm_server):
    llm_server.batch_hold = lambda lines: True
    first = batch_llm(llm_server)
    tickets = []
    call = asyncio.ensure_future(first.send("slow one", custom_id="s1", on_batched=tickets.append))
    while not tickets:
        await asyncio.sleep(0.01)
    call.cancel()  # the process waiting for it goes away; the batch goes on at the provider
    await asyncio.gather(call, return_exceptions=True)
    await first.aclose()

    second = batch_llm(llm_server)
    again = []
    waiting = asyncio.ensure_future(
        second.send("slow one", custom_id="s1", ticket=tickets[0], on_batched=again.append)
    )
    while not again:
        await asyncio.sleep(0.01)
    assert again == tickets  # it shows the same batch at once
    llm_server.release_batches()
    answer = await waiting
    assert answer.text == "Answer: slow one"
    assert len(llm_server.batches) == 1 and second.batches_created == 0


async def test_a_ticket_for_a_batch_the_server_does_not_know_sends_anew(llm_server):
    llm = batch_llm(llm_server)
    tickets = []
    ticket = {"batch_id": "batch_gone", "custom_id": "x1"}
    answer = await llm.send("hello", custom_id="x1", ticket=ticket, on_batched=tickets.append)
    assert answer.text == "Answer: hello"
    assert len(llm_server.batches) == 1
    assert [t["batch_id"] for t in tickets] == ["batch_gone", next(iter(llm_server.batches))]


async def test_a_ticket_for_another_request_is_ignored(llm_server):
    llm = batch_llm(llm_server)
    await llm.send("hello", custom_id="new", ticket={"batch_id": "b1", "custom_id": "old"})
    assert len(llm_server.batches) == 1
    assert next(iter(llm_server.batches.values())).lines[0]["custom_id"] == "new"


def test_tickets_from_records_are_checked():
    assert ticket_from({"batch_id": "batch_1", "custom_id": "k12"}) == {
        "batch_id": "batch_1",
        "custom_id": "k12",
    }
    for bad in (None, "batch_1", {"batch_id": "../files", "custom_id": "k"}, {"batch_id": "b"}):
        assert ticket_from(bad) is None


def test_only_an_openai_compatible_client_can_batch():
    from orchestra_nb.llm import ScriptedLLM

    with pytest.raises(ConfigError, match="needs an OpenAI-compatible LLM"):
        BatchLLM(ScriptedLLM(["an answer"]))  # type: ignore[arg-type]
