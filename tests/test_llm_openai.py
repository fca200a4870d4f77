"""The real openai client against a real OpenAI-protocol server on loopback."""

from __future__ import annotations

import logging
import time

import pytest

from orchestra_nb import ConfigError, LLMError, OpenAILLM, RateLimitError
from tests.support.llm_server import LLMServer, Reply, error_body

KEY = "sk-test-VERYSECRET-0123456789"
SCHEMA = {"type": "object", "properties": {"subtasks": {"type": "array"}}}


def make(server: LLMServer, **kwargs) -> OpenAILLM:
    kwargs.setdefault("backoff", 0.01)
    return OpenAILLM("test-model", base_url=server.url, api_key=KEY, **kwargs)


async def test_normal_answer_with_usage(llm_server):
    llm = make(llm_server)
    completion = await llm.complete([{"role": "user", "content": "Hello there\nsecond line"}])
    assert completion.text == "Answer: Hello there"
    assert completion.model == "test-model"
    assert completion.usage.completion_tokens == len("Answer: Hello there") // 4
    assert completion.usage.total_tokens > 0
    assert completion.data is None
    assert llm.calls == 1
    assert llm.usage == completion.usage
    sent = llm_server.requests[0]
    assert sent["_headers"]["authorization"] == f"Bearer {KEY}"
    assert sent["model"] == "test-model"
    assert KEY not in repr(llm) and KEY not in str(llm)
    host = llm_server.url.split("//")[1].split("/")[0]
    assert repr(llm) == f"OpenAILLM(model='test-model', host='{host}')"


async def test_string_prompt_and_parameters(llm_server):
    llm = make(llm_server, temperature=0.2)
    await llm.complete("just text", max_tokens=50)
    sent = llm_server.requests[0]
    assert sent["messages"] == [{"role": "user", "content": "just text"}]
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 50
    assert llm.cache_identity() == {"model": "test-model", "temperature": 0.2, "max_tokens": None}


async def test_429_with_retry_after_then_success(llm_server):
    llm_server.script(Reply(status=429, headers={"Retry-After": "1"},
                            body=error_body("slow down", "rate_limit_error")))  # fmt: skip
    llm = make(llm_server)
    started = time.perf_counter()
    completion = await llm.complete("hi")
    waited = time.perf_counter() - started
    assert completion.text == "Answer: hi"
    assert 0.9 <= waited < 5
    assert llm.rate_limited == 1
    assert len(llm_server.requests) == 2


async def test_retry_after_ms_header(llm_server):
    llm_server.script(Reply(status=429, headers={"retry-after-ms": "300"}))
    llm = make(llm_server)
    started = time.perf_counter()
    await llm.complete("hi")
    assert 0.25 <= time.perf_counter() - started < 3


async def test_500_then_success(llm_server):
    llm_server.script(Reply(status=500), Reply(status=503))
    llm = make(llm_server)
    assert (await llm.complete("hi")).text == "Answer: hi"
    assert len(llm_server.requests) == 3


async def test_attempt_timeout_then_success(llm_server):
    llm_server.script(Reply(content="late", delay=1.5))
    llm = make(llm_server, timeout=30, attempt_timeout=0.5)
    completion = await llm.complete("hi")
    assert completion.text == "Answer: hi"


async def test_retries_exhausted(llm_server):
    llm_server.script(*[Reply(status=429) for _ in range(3)])
    with pytest.raises(RateLimitError) as info:
        await make(llm_server, max_retries=2).complete("hi")
    host = llm_server.url.split("//")[1].split("/")[0]
    assert str(info.value) == (
        f"the LLM server at {host} kept rate limiting (429) after 3 attempt(s)"
    )
    llm_server.script(*[Reply(status=502) for _ in range(2)])
    with pytest.raises(LLMError, match=r"answered 502 after 2 attempt\(s\)"):
        await make(llm_server, max_retries=1).complete("hi")


async def test_attempt_timeouts_exhausted(llm_server):
    llm_server.script(Reply(delay=1.0), Reply(delay=1.0))
    with pytest.raises(LLMError, match=r"timed out after 2 attempt\(s\)"):
        await make(llm_server, timeout=30, attempt_timeout=0.2, max_retries=1).complete("hi")


async def test_the_timeout_is_one_deadline_for_every_attempt(llm_server):
    llm_server.script(Reply(delay=1.0), Reply(delay=1.0))
    with pytest.raises(LLMError, match=r"did not answer within the 0.3 s timeout \(1 attempt"):
        await make(llm_server, timeout=0.3, max_retries=3).complete("hi")


async def test_other_4xx_are_not_retried(llm_server):
    llm_server.script(Reply(status=400, body=error_body("bad messages")))
    with pytest.raises(LLMError, match="answered 400 after 1 attempt"):
        await make(llm_server).complete("hi")
    assert len(llm_server.requests) == 1
    llm_server.script(Reply(status=404, body=error_body("model not found")))
    with pytest.raises(ConfigError, match="does not know model 'test-model'"):
        await make(llm_server).complete("hi")


async def test_structured_output_when_supported(llm_server):
    llm_server.script('{"subtasks": [{"id": "a"}]}')
    llm = make(llm_server)
    completion = await llm.complete("plan", schema=SCHEMA)
    assert completion.data == {"subtasks": [{"id": "a"}]}
    assert llm_server.requests[0]["response_format"]["type"] == "json_schema"
    assert llm_server.requests[0]["response_format"]["json_schema"]["schema"] == SCHEMA
    assert llm.structured_output is True


async def test_server_that_rejects_json_schema_falls_back_to_text():
    with LLMServer(lambda r: '```json\n{"subtasks": [],}\n```', reject_json_schema=True) as server:
        llm = make(server)
        completion = await llm.complete("plan please", schema=SCHEMA)
        assert completion.data == {"subtasks": []}
        assert [("response_format" in r) for r in server.requests] == [True, False]
        assert server.requests[1]["messages"][-1]["content"].endswith(
            "JSON only, no prose and no code fences."
        )
        assert llm.structured_output is False
        await llm.complete("again", schema=SCHEMA)
        assert "response_format" not in server.requests[2]  # remembered


async def test_malformed_json_is_repaired_prose_is_none(llm_server):
    llm_server.script("Here: {'subtasks': [{'id': 'a',},]}", "I cannot help with that.")
    llm = make(llm_server)
    assert (await llm.complete("p", schema=SCHEMA)).data == {"subtasks": [{"id": "a"}]}
    assert (await llm.complete("p", schema=SCHEMA)).data is None


async def test_rejected_key_never_leaks(caplog):
    caplog.set_level(logging.DEBUG)
    with LLMServer(echo_auth_in_errors=True) as server:
        server.script(Reply(status=401))
        llm = make(server)
        with pytest.raises(ConfigError) as info:
            await llm.complete("hi")
    err = info.value
    assert "rejected the API key (401)" in str(err)
    texts = [str(err), repr(err), *map(str, err.args)]
    cause = err.__cause__ or err.__context__
    while cause is not None:
        texts.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    assert all(KEY not in t for t in texts)
    assert "***" in str(err)  # the echoed key was scrubbed, not just absent


def test_missing_configuration(monkeypatch):
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "AZURE_OPENAI_ENDPOINT",
        "AZURE_OPENAI_API_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError) as info:
        OpenAILLM()
    message = str(info.value)
    assert "OPENAI_API_KEY" in message and "OPENAI_BASE_URL" in message
    assert "\n" not in message


def test_configuration_from_the_environment(monkeypatch, llm_server):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.url)
    monkeypatch.setenv("ORCHESTRA_MODEL", "env-model")
    llm = OpenAILLM()
    assert llm.model == "env-model"
    assert llm.base_url == llm_server.url


def test_local_server_needs_no_key(monkeypatch, llm_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    import asyncio

    llm = OpenAILLM("llama3", base_url=llm_server.url)
    assert asyncio.run(llm.complete("hi")).text == "Answer: hi"
    assert llm_server.requests[0]["_headers"]["authorization"] == "Bearer not-needed"


async def test_azure_endpoint(monkeypatch, llm_server):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    base = llm_server.url.rsplit("/v1", 1)[0]
    llm = OpenAILLM("my-deployment", azure_endpoint=base, api_key=KEY, api_version="2024-10-21")
    # Azure routes by deployment: /openai/deployments/<name>/chat/completions
    with pytest.raises(ConfigError):
        await llm.complete("hi")  # our loopback server only serves /v1 paths -> 404
    assert KEY not in repr(llm)


def test_usable_from_two_loops(llm_server):
    import asyncio

    llm = make(llm_server)
    assert asyncio.run(llm.complete("one")).text == "Answer: one"
    assert asyncio.run(llm.complete("two")).text == "Answer: two"


async def test_finish_reason_is_carried(llm_server):
    llm_server.script("done", Reply(content='{"subtasks": [{"id": "a"', finish_reason="length"))
    llm = make(llm_server)
    assert (await llm.complete("hi")).finish_reason == "stop"
    cut = await llm.complete("plan", schema=SCHEMA)
    assert cut.finish_reason == "length"
    assert cut.text == '{"subtasks": [{"id": "a"'
    assert cut.data is None  # a cut document is not mended into a shorter one
