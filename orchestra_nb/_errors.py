"""The exceptions a user can meet, one per thing that can go wrong.

Every message is one line that names what is wrong (the offending task ids, the
store URL without its password, the environment variable to set) so that IPython
can show it as a ``UsageError``-style line instead of a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class OrchestraError(Exception):
    """Base class of every error this package raises on purpose."""


class PlanError(OrchestraError, ValueError):
    """A plan that cannot be used: malformed, cyclic, empty, or an edit that would break it.

    ``ids`` names the offending task ids (possibly empty); ``answer`` carries the
    LLM's last raw answer when the plan came from a model.
    """

    def __init__(self, message: str, *, ids: Iterable[str] = (), answer: str | None = None):
        super().__init__(message)
        self.ids: tuple[str, ...] = tuple(ids)
        self.answer = answer


class ConfigError(OrchestraError):
    """Missing or contradictory configuration (no API key, a bad store URL, ...)."""


class LLMError(OrchestraError):
    """The LLM server failed in a way retries did not fix.

    ``status`` is the HTTP status the server answered (None: no answer, or not
    an HTTP error); ``retry_after`` the seconds the server asked to wait before
    trying again (its ``Retry-After`` header), so whoever retries next can honour
    it. Both come from the server: bound them before trusting them.
    """

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class RateLimitError(LLMError):
    """The LLM server kept answering 429 after every retry."""


class ReplayMissError(LLMError, LookupError):
    """The offline replay client has no recording for a prompt (the message says why when
    the same question is recorded under other instructions)."""


class StoreError(OrchestraError):
    """A result store failed."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The result store cannot be reached (Redis down, SQLite file not writable).

    A condition of the store, not of any task: what was computed is kept and can
    be committed once the store is back.
    """


class StoreFullError(StoreUnavailableError):
    """The result store has no room left (a full disk, SQLite's size limit)."""


class UnsafeDataError(StoreError):
    """Stored data that fails a safety check: a pickle without a valid signature, an entry
    not authenticated by the signing key, or a record naming files outside the output
    folder."""


class RunError(OrchestraError):
    """A run could not start or continue (unknown run id, bad mode, ...)."""


class LeaseError(RunError):
    """Another process holds the lease on this run."""


class TaskTimeoutError(OrchestraError, TimeoutError):
    """A task ran longer than its timeout."""


class TaskFailedError(OrchestraError):
    """Raised by ``Run.result(id)`` (and strict waits) for a task that failed."""

    def __init__(self, task_id: str, error: str):
        super().__init__(f"task {task_id!r} failed: {error}")
        self.task_id = task_id
        self.error = error


def one_line(exc: BaseException) -> str:
    """An error as one line, prefixed by its type unless it is one of ours (whose
    messages already say what is wrong)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = type(exc).__name__
    if isinstance(exc, TaskTimeoutError | StoreError | ConfigError | RunError | PlanError):
        return text
    return f"{name}: {text}" if not text.startswith(name) else text
