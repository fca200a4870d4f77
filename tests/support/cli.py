"""Running the ``orchestra-nb`` command in a child process, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def run_cli(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """``orchestra-nb ARGS`` in ``cwd`` with no OpenAI settings from this environment
    (plus ``env``); its exit code and output."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    clean.pop("ORCHESTRA_SIGNING_KEY", None)
    clean["PYTHONPATH"] = str(ROOT)
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "orchestra_nb.cli", *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
