"""The notebooks' test harness: a private redis-server for the notebooks that need one.

Notebooks 04 and 05 read ``REDIS_URL``. Before the first notebook's kernel
starts, the harness starts its own ``redis-server`` on a free port (or takes
``ORCHESTRA_TEST_REDIS_URL``) and exports ``REDIS_URL`` to the kernels, so
``make test`` never touches a Redis that happens to run on this machine (a
``REDIS_URL`` already set is replaced) and passes where none does. Without
redis-server the notebook tests fail; they never skip.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

_server: Any = None  # the RedisServer started here, if any
_exported = False


def _redis_url() -> str:
    global _server
    given = os.environ.get("ORCHESTRA_TEST_REDIS_URL")
    if given:
        return given
    if _server is None:
        # imported here: tests/conftest.py loads this module as a plugin, with its asserts
        # rewritten, and an earlier import would keep it from doing so
        from tests.support.redis_server import RedisServer

        _server = RedisServer().start()
    return _server.url


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Runs before nbval starts a notebook's kernel, so the kernel inherits REDIS_URL."""
    global _exported
    if item.path.suffix != ".ipynb" or _exported:
        return
    try:
        os.environ["REDIS_URL"] = _redis_url()
        _exported = True
    except Exception as exc:  # no skip: the notebooks that use Redis are part of the suite
        pytest.fail(f"cannot start a redis-server for the notebooks: {exc}", pytrace=False)


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _server is not None:
        _server.close()
