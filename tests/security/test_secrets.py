"""Secrets stay secret: a cell cannot expand its way to them, Redis passwords are used and
never shown."""

from __future__ import annotations

import pytest
from IPython import get_ipython
from IPython.core.error import UsageError
from IPython.testing.globalipapp import start_ipython

import orchestra_nb as onb
from orchestra_nb import StoreUnavailableError
from orchestra_nb.store import open_store
from tests.support.cli import run_cli
from tests.support.llm_server import LLMServer
from tests.support.redis_server import RedisServer

SECRET = "sk-kernel-SECRET-0123456789"


@pytest.fixture(scope="module")
def shell():
    ip = start_ipython() or get_ipython()  # started once per process
    ip.run_line_magic("load_ext", "orchestra_nb")
    return ip


@pytest.fixture
def ip(shell, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with LLMServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        shell.server = server
        yield shell
    for name in [n for n in shell.user_ns if n.startswith("s_")]:
        del shell.user_ns[name]


class Holder:
    secret = SECRET


@pytest.mark.parametrize(
    "field",
    [
        "{get_ipython.__func__.__globals__[os].environ[OPENAI_API_KEY]}",
        "{s_holder.secret}",
        "{s_env[OPENAI_API_KEY]}",
        "{s_list[0]}",
        "{s_name!r}",
        "{s_name:>{s_width}}",
        "{_ih}",
        "{__builtins__}",
    ],
)
def test_a_goal_cannot_expand_to_anything_but_plain_names(ip, capsys, field):
    import os

    ip.user_ns.update(s_holder=Holder(), s_env=os.environ, s_list=[SECRET], s_name="x", s_width=5)
    result = ip.run_cell(f"%%orchestrate --name s_out --store memory://\nA report on {field}")
    error = result.error_in_exec or result.error_before_exec
    assert isinstance(error, UsageError), error
    message = str(error)
    assert message.startswith(("the cell uses {", "the cell has an unmatched '{'")), message
    assert "only plain {variable} names are filled" in message or "{{" in message
    captured = capsys.readouterr()
    assert SECRET not in str(error) + captured.out + captured.err
    assert "s_out" not in ip.user_ns
    assert ip.server.requests == []  # nothing reached the model


def test_plain_names_and_literal_braces_still_work(ip):
    ip.user_ns["s_topic"] = "heat pumps"
    ip.run_cell("%%orchestrate --name s_ok --wait --store memory://\nOn {s_topic} {{not a var}}")
    assert ip.user_ns["s_ok"].goal == "On heat pumps {not a var}"


async def test_a_redis_password_in_the_query_is_used_and_never_shown(tmp_path):
    password = "pw-in-the-query-42"
    server = RedisServer(password=password).start()
    try:
        url = f"redis://127.0.0.1:{server.port}/0?password={password}&namespace=team"
        store = open_store(url)
        await store.put("k", "v")  # authenticated: the password was not dropped
        assert await store.get("k") == "v"
        assert password not in store.url and password not in repr(store)
        assert store.url.endswith("?password=***&namespace=team")
        shared = open_store(store.shared_url())  # what cluster workers open: it must connect
        assert await shared.get("k") == "v"
        await shared.close()
        run = await onb.run(onb.TaskGraph([onb.Task("a")]), runner=lambda t, i: "ok", store=store)
        assert run.ok
        await store.close()

        listed = run_cli("runs", "--store", url, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert run.id in listed.stdout and password not in listed.stdout + listed.stderr

        wrong = url.replace(password, "wrong-pw-SECRET")
        failed = run_cli("runs", "--store", wrong, cwd=tmp_path)
        assert failed.returncode == 2
        assert failed.stderr.startswith("orchestra-nb: error: Redis at redis://127.0.0.1:")
        assert "?password=***" in failed.stderr and failed.stderr.count("\n") == 1
        assert "wrong-pw-SECRET" not in failed.stdout + failed.stderr
        missing = run_cli("report", "nope", "--store", url, "-o", "o", cwd=tmp_path)
        assert missing.returncode == 2 and password not in missing.stderr

        bad = open_store(wrong)
        with pytest.raises(StoreUnavailableError) as info:
            await bad.ping()
        assert "wrong-pw-SECRET" not in str(info.value) and info.value.__cause__ is None
        await bad.close()
    finally:
        server.close()


def test_unknown_redis_url_options_are_refused_not_dropped():
    with pytest.raises(onb.ConfigError, match=r"unknown option\(s\) passwd in the Redis") as info:
        open_store("redis://127.0.0.1:1/0?passwd=typo-SECRET")
    assert "typo-SECRET" not in str(info.value)
