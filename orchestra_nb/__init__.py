"""orchestra_nb: plan a goal into a task graph with an LLM, edit it, run it, cache every result.

Names are re-exported lazily (PEP 562) so ``import orchestra_nb`` stays fast: networkx,
openai, redis, graphviz and dask load only when the part that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._errors import (
    ConfigError,
    LeaseError,
    LLMError,
    OrchestraError,
    PlanError,
    RateLimitError,
    ReplayMissError,
    RunError,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
    TaskFailedError,
    TaskTimeoutError,
    UnsafeDataError,
)

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY: dict[str, str] = {
    "Task": "._plan",
    "TaskGraph": "._plan",
    "CriticalPath": "._plan",
    "PlanStream": "._plan_stream",
    "Scheduler": "._scheduler",
    "run": ".engine",
    "start": ".engine",
    "history": ".engine",
    "resume": ".engine",
    "start_resume": ".engine",
    "rollback": ".engine",
    "Run": ".engine",
    "Orchestrator": ".engine",
    "Event": "._events",
    "task_function": "._actions",
    "cache_key": "._cache",
    "Image": "._values",
    "Markdown": "._values",
    "LLM": ".llm",
    "AllowedParams": ".llm",
    "Completion": ".llm",
    "Usage": ".llm",
    "OpenAILLM": ".llm",
    "BatchLLM": ".llm",
    "ReplayLLM": ".llm",
    "RateLimit": ".llm",
    "decompose": "._decompose",
    "estimate": "._estimate",
    "Estimate": "._estimate",
    "Budget": "._budget",
    "set_prices": "._cost",
    "price_of": "._cost",
    "plan_and_run": "._streaming",
    "to_graphviz": "._render",
    "DaskExecutor": "._dask",
    "StoredResult": ".store",
    "RunOptions": ".engine",
    "Revision": ".engine",
    "RevisionRequest": ".engine",
    "Executor": "._executors",
    "LocalExecutor": "._executors",
    "load_ipython_extension": ".jupyter",
    "unload_ipython_extension": ".jupyter",
    "ResultStore": ".store",
    "open_store": ".store",
}

__all__ = [
    "LLM",
    "AllowedParams",
    "BatchLLM",
    "Budget",
    "Completion",
    "ConfigError",
    "CriticalPath",
    "DaskExecutor",
    "Estimate",
    "Event",
    "Executor",
    "Image",
    "LLMError",
    "LeaseError",
    "LocalExecutor",
    "Markdown",
    "OpenAILLM",
    "OrchestraError",
    "Orchestrator",
    "PlanError",
    "PlanStream",
    "RateLimit",
    "RateLimitError",
    "ReplayLLM",
    "ReplayMissError",
    "ResultStore",
    "Revision",
    "RevisionRequest",
    "Run",
    "RunError",
    "RunOptions",
    "Scheduler",
    "StoreError",
    "StoreFullError",
    "StoreUnavailableError",
    "StoredResult",
    "Task",
    "TaskFailedError",
    "TaskGraph",
    "TaskTimeoutError",
    "UnsafeDataError",
    "Usage",
    "cache_key",
    "decompose",
    "estimate",
    "history",
    "load_ipython_extension",
    "open_store",
    "plan_and_run",
    "price_of",
    "resume",
    "rollback",
    "run",
    "set_prices",
    "start",
    "start_resume",
    "task_function",
    "to_graphviz",
    "unload_ipython_extension",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestra_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._actions import task_function
    from ._budget import Budget
    from ._cache import cache_key
    from ._cost import price_of, set_prices
    from ._dask import DaskExecutor
    from ._decompose import decompose
    from ._estimate import Estimate, estimate
    from ._events import Event
    from ._executors import Executor, LocalExecutor
    from ._plan import CriticalPath, Task, TaskGraph
    from ._plan_stream import PlanStream
    from ._render import to_graphviz
    from ._scheduler import Scheduler
    from ._streaming import plan_and_run
    from ._values import Image, Markdown
    from .engine import (
        Orchestrator,
        Revision,
        RevisionRequest,
        Run,
        RunOptions,
        history,
        resume,
        rollback,
        run,
        start,
        start_resume,
    )
    from .jupyter import load_ipython_extension, unload_ipython_extension
    from .llm import (
        LLM,
        AllowedParams,
        BatchLLM,
        Completion,
        OpenAILLM,
        RateLimit,
        ReplayLLM,
        Usage,
    )
    from .store import ResultStore, StoredResult, open_store
