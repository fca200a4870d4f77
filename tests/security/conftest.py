"""The shared stores the attacks plant records in: a SQLite file and a real Redis."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["sqlite", "redis"])
def shared_url(request, tmp_path) -> str:
    """A store another party can write to: a SQLite file, or a namespace on a real Redis."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/shared.db"
    return request.getfixturevalue("redis_store_url")


def tree(root) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (store files aside) with its size and mtime."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.startswith("shared.db"):
            stat = path.stat()
            out[str(path.relative_to(root))] = (stat.st_size, stat.st_mtime_ns)
    return out
