"""A real redis-server for tests: a private one per session, and restartable ones.

The session fixture ``redis_url`` uses ORCHESTRA_TEST_REDIS_URL when set, else
starts its own redis-server on a free port. When neither works the fixture
fails the tests that need it — Redis tests never skip.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A redis-server process on 127.0.0.1 that can be stopped and started on the same port."""

    def __init__(
        self, port: int | None = None, password: str | None = None, *, aof: bool = False
    ) -> None:
        self.port = port or free_port()
        self.password = password
        self.aof = aof  # append-only file, fsynced on every write: a kill loses nothing
        self.dir = tempfile.mkdtemp(prefix="orchestra-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--dir", self.dir]  # fmt: skip
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if self.process.poll() is not None:
                    code = self.process.returncode
                    raise RuntimeError(f"redis-server exited with {code}") from None
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not listen on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final save (what a crash or an OOM kill does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _reachable(url: str) -> bool:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    import os

    given = os.environ.get("ORCHESTRA_TEST_REDIS_URL")
    if given:
        if not _reachable(given):
            pytest.fail(f"ORCHESTRA_TEST_REDIS_URL={given} is not reachable")
        yield given
        return
    try:
        server = RedisServer().start()
    except Exception as exc:  # no skip: Redis is part of what we test
        pytest.fail(f"cannot start a redis-server for the tests: {exc}")
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_store_url(redis_url: str) -> Iterator[str]:
    """The session server with a namespace of this test's own (removed afterwards)."""
    namespace = f"test-{uuid.uuid4().hex[:10]}"
    yield f"{redis_url}?namespace={namespace}"
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private server the test may stop and start."""
    server = RedisServer()
    try:
        server.start()
    except Exception as exc:
        pytest.fail(f"cannot start a redis-server for the test: {exc}")
    try:
        yield server
    finally:
        server.close()
