"""The blocking-wait helper, on every Python version we support."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestra_nb.jupyter._nested import wait
from tests.support import LoopTicks

ROOT = Path(__file__).resolve().parent.parent


async def _value(x, delay=0.01):
    await asyncio.sleep(delay)
    return x


def test_no_running_loop():
    assert wait(_value(3)) == 3


def test_inside_a_running_loop():
    async def cell():  # what a notebook cell is: code running inside the loop
        return wait(_value("nested")) + "!"

    assert asyncio.run(cell()) == "nested!"


def test_inside_a_running_loop_other_tasks_keep_going():
    async def cell():
        async with LoopTicks() as ticks:
            wait(_value(None, 0.2))  # blocks this cell, not the loop
        return ticks.count

    assert asyncio.run(cell()) >= 5


def test_timeout():
    async def cell():
        with pytest.raises(TimeoutError):
            wait(_value(1, 5), timeout=0.05)

    asyncio.run(cell())
    with pytest.raises(TimeoutError):
        wait(_value(1, 5), timeout=0.05)


def test_errors_propagate():
    async def boom():
        raise ValueError("inner")

    async def cell():
        with pytest.raises(ValueError, match="inner"):
            wait(boom())

    asyncio.run(cell())


def test_keyboard_interrupt_cancels_the_run_and_keeps_what_finished():
    import _thread

    import orchestra_nb as onb

    g = onb.TaskGraph(
        [onb.Task(f"t{i}", dependencies=(f"t{i - 1}",) if i else ()) for i in range(50)]
    )

    async def runner(task, inputs):
        await asyncio.sleep(0.02)
        return task.id

    async def cell():
        run = onb.start(g, runner=runner, store="memory://")
        timer = threading.Timer(0.3, _thread.interrupt_main)
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            wait(run, on_interrupt=run.cancel)
        timer.cancel()
        return run

    run = asyncio.run(cell())
    assert run.state == "cancelled"
    assert run.results["t0"] == "t0"
    assert 2 <= len(run.results) < 50
    assert "running" not in run.status.values()


SCRIPT = """
import asyncio, importlib.util, sys
spec = importlib.util.spec_from_file_location("_nested", sys.argv[1])
nested = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nested)

async def value():
    await asyncio.sleep(0.01)
    return 42

async def cell():
    return nested.wait(value()) + nested.wait(value())

assert nested.wait(value()) == 42
assert asyncio.run(cell()) == 84
print("ok", sys.version_info[:2])
"""


def _python(version: str) -> Path | None:
    candidates = (
        [
            Path(f"/root/.pyenv/versions/{v}/bin/python")
            for v in os.listdir("/root/.pyenv/versions")
            if v.startswith(version)
        ]
        if os.path.isdir("/root/.pyenv/versions")
        else []
    )
    found = shutil.which(f"python{version}")
    candidates += [Path(found)] if found else []
    return next((c for c in candidates if c.exists()), None)


@pytest.mark.parametrize("version", ["3.11", "3.12", "3.13"])
def test_on_every_supported_python(version, tmp_path):
    if version == f"{sys.version_info[0]}.{sys.version_info[1]}":
        python = Path(sys.executable)
    else:
        base = _python(version)
        if base is None:
            pytest.fail(
                f"Python {version} is not installed: the nested-loop helper must be "
                "tested on every supported version"
            )
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        venv = cache / "orchestra-nb-test-venvs" / f"py{version}"
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([str(base), "-m", "venv", str(venv)], check=True)
        check = subprocess.run([str(python), "-c", "import nest_asyncio2"], capture_output=True)
        if check.returncode != 0:
            subprocess.run(
                [str(python), "-m", "pip", "install", "-q", "nest-asyncio2"],
                check=True,
                timeout=300,
            )
    module = ROOT / "orchestra_nb" / "jupyter" / "_nested.py"
    result = subprocess.run(
        [str(python), "-c", SCRIPT, str(module)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")
