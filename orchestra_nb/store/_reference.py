"""References to results that stay in a store: what a cluster worker hands back.

A ``StoredResult`` names a result by its cache key in a store that both the
notebook and the workers can open. Values travel only when someone needs them:
``resolve`` swaps references for their values in one batch read. This is the
one place references are resolved; the engine and the actions only pass them on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._base import ResultStore


@dataclass(frozen=True)
class StoredResult:
    """A result a cluster worker committed to the shared store; the value stays there."""

    key: str
    task_id: str
    url: str = field(repr=False, compare=False)  # may hold a password: never shown

    async def load(self) -> Any:
        """The value, read from the store the reference points to."""
        from . import open_store

        store = open_store(self.url)
        try:
            return await store.get(self.key)
        finally:
            await store.close()

    def __repr__(self) -> str:
        return f"StoredResult({self.task_id!r}, key={self.key[:12]}…)"


async def resolve(store: ResultStore, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with every ``StoredResult`` replaced by its value from ``store``."""
    refs = {name: v.key for name, v in values.items() if isinstance(v, StoredResult)}
    if not refs:
        return dict(values)
    found = await store.get_many(refs.values())
    return {name: found[refs[name]] if name in refs else v for name, v in values.items()}
