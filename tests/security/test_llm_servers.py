"""Hostile or broken LLM servers: dribbled answers, bodies that are not completions,
Retry-After, and which server gets which API key."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

import orchestra_nb as onb
from orchestra_nb import LLMError, OpenAILLM, RateLimitError, Task, TaskGraph
from orchestra_nb.llm import llm_from_spec
from tests.support.llm_server import LLMServer, Reply

ENV_KEY = "sk-env-ONLY-FOR-OPENAI-0123456789"


async def test_a_dribbling_server_cannot_stretch_the_timeout():
    """One byte every 0.4 s keeps every socket read alive; the 2 s timeout must still hold,
    retries included (the default client retries timeouts four times)."""
    answer = "x" * 200
    with LLMServer() as server:
        server.script(*[Reply(content=answer, dribble=0.4) for _ in range(5)])
        llm = OpenAILLM("m", base_url=server.url, api_key="k", timeout=2)
        started = time.monotonic()
        with pytest.raises(LLMError) as info:
            await llm.complete("hi")
        elapsed = time.monotonic() - started
        body_seconds = 0.4 * (len(answer) + 200)  # the body is larger than the answer
        assert str(info.value).endswith("did not answer within the 2 s timeout (1 attempt(s))")
        assert elapsed < body_seconds / 10  # gave up long before the server would have finished
        for _ in range(50):  # the server sees the client hang up at its next byte
            if server.hung_up:
                break
            await asyncio.sleep(0.1)
        assert server.hung_up == 1
        assert len(server.requests) == 1


async def test_a_malformed_200_becomes_an_llm_error_naming_the_server():
    with LLMServer() as server:
        host = server.url.split("//")[1].split("/")[0]
        llm = OpenAILLM("m", base_url=server.url, api_key="k", max_retries=0)
        for body in ("this is not JSON {", '{"object": "chat.completion"}', '{"choices": []}',
                     '{"choices": [{"message": null}]}', "[1, 2]"):  # fmt: skip
            server.script(Reply(raw=body))
            with pytest.raises(LLMError) as info:
                await llm.complete("hi")
            message = str(info.value)
            assert message.startswith(f"the LLM server at {host} answered"), message
            assert "\n" not in message
            assert info.value.status == 200
            assert not isinstance(info.value.__cause__, ValueError)


async def test_errors_carry_retry_after_and_a_long_wait_fails_at_once():
    with LLMServer() as server:
        server.script(Reply(status=429, headers={"Retry-After": "7"}))
        with pytest.raises(RateLimitError) as info:
            await OpenAILLM("m", base_url=server.url, api_key="k", max_retries=0).complete("hi")
        assert (info.value.status, info.value.retry_after) == (429, 7.0)
        assert "asked to wait 7 s" in str(info.value)

        server.script(Reply(status=503, headers={"Retry-After": "600"}))
        llm = OpenAILLM("m", base_url=server.url, api_key="k", timeout=5)
        started = time.monotonic()
        with pytest.raises(LLMError) as info:
            await llm.complete("hi")
        assert time.monotonic() - started < 5  # no point waiting past the deadline
        assert (info.value.status, info.value.retry_after) == (503, 600.0)
        assert "past the 5 s timeout" in str(info.value)

        for header in ("nan", "-5", "inf", "soon"):
            server.script(Reply(status=429, headers={"Retry-After": header}))
            with pytest.raises(RateLimitError) as info:
                await OpenAILLM("m", base_url=server.url, api_key="k", max_retries=0).complete("x")
            assert info.value.retry_after in (None, 0.0), header


async def test_the_engine_honours_retry_after_when_it_retries():
    with LLMServer() as server:
        server.script(Reply(status=429, headers={"Retry-After": "1"}))
        llm = OpenAILLM("m", base_url=server.url, api_key="k", max_retries=0)
        g = TaskGraph([Task("a", description="one step")])
        run = await onb.run(g, llm=llm, retries=1, backoff=0.01, store="memory://")
        assert run.ok
        first, second = server.requests
        assert second["_at"] - first["_at"] >= 1.0  # the order of events, not a duration bound


async def test_ollama_and_other_servers_never_get_the_environments_openai_key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", ENV_KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with LLMServer() as server:
        monkeypatch.setenv("OLLAMA_HOST", server.url.split("//")[1].rsplit("/v1", 1)[0])
        for llm in (llm_from_spec("ollama:llama3"), OpenAILLM("m", base_url=server.url)):
            await llm.complete("hi")
        sent = [r["_headers"].get("authorization", "") for r in server.requests]
        assert len(sent) == 2 and not any(ENV_KEY in h for h in sent)
        assert server.requests[0]["model"] == "llama3"

        # the environment's key does go to the server the environment names
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        await OpenAILLM("m").complete("hi")
        assert server.requests[-1]["_headers"]["authorization"] == f"Bearer {ENV_KEY}"
        # and an explicit key to an explicit server
        await OpenAILLM("m", base_url=server.url, api_key="sk-mine").complete("hi")
        assert server.requests[-1]["_headers"]["authorization"] == "Bearer sk-mine"


def test_ollama_through_the_command_line(tmp_path):
    from tests.support.cli import run_cli

    plan = {"subtasks": [{"id": "a", "name": "A", "description": "d", "dependencies": []}]}
    with LLMServer(lambda request: Reply(content=json.dumps(plan))) as server:
        host = server.url.split("//")[1].rsplit("/v1", 1)[0]
        result = run_cli(
            "plan", "a goal", "--llm", "ollama:llama3", cwd=tmp_path,
            env={"OPENAI_API_KEY": ENV_KEY, "OLLAMA_HOST": host},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["subtasks"][0]["id"] == "a"
        assert all(ENV_KEY not in json.dumps(r["_headers"]) for r in server.requests)
