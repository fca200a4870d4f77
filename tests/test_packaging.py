"""The project installs the same things everywhere, and imports fast."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# PyPI name -> conda-forge name(s) where they differ
CONDA_NAMES = {
    "graphviz": ["python-graphviz"],
    "redis": ["redis-py"],
    "dask[distributed]": ["dask", "distributed"],
    "matplotlib": ["matplotlib-base"],
}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~; ]", requirement, maxsplit=1)[0].strip().lower()


def test_environment_yml_lists_the_same_packages_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for _extra, reqs in project["optional-dependencies"].items():
        wanted += [r for r in reqs if not r.startswith("orchestra-nb")]
    expected: set[str] = set()
    for requirement in wanted:
        name = _name(requirement)
        expected.update(CONDA_NAMES.get(name, [name]))
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = {_name(d) for d in env["dependencies"] if isinstance(d, str)}
    listed -= {"python", "pip", "graphviz"}  # the interpreter, installer and dot binary
    graphviz_binary = any(_name(d) == "graphviz" for d in env["dependencies"])
    assert graphviz_binary, "environment.yml must install the graphviz binary (dot)"
    assert listed == expected


def test_import_is_fast_and_lazy():
    code = (
        "import time, sys; t = time.perf_counter(); import orchestra_nb; "
        "print(time.perf_counter() - t); "
        "print(','.join(m for m in ('openai', 'redis', 'graphviz', 'dask', 'anywidget', "
        "'networkx', 'IPython', 'pandas') if m in sys.modules))"
    )
    best = float("inf")
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split("\n")
        best = min(best, float(out[0]))
        assert out[1] == "", f"import orchestra_nb loaded heavy modules: {out[1]}"
    assert best < 0.3


def test_public_names_resolve():
    import orchestra_nb

    missing = [n for n in orchestra_nb.__all__ if not hasattr(orchestra_nb, n)]
    assert missing == []


def test_the_engine_imports_no_cluster_code():
    code = (
        "import sys, orchestra_nb as onb; onb.run; onb.Run; onb.Orchestrator; "
        "print(','.join(m for m in ('dask', 'distributed', 'orchestra_nb._dask') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    engine = Path(__file__).resolve().parent.parent / "orchestra_nb" / "engine"
    for module in engine.glob("*.py"):
        assert "_dask" not in module.read_text(), f"{module.name} refers to the Dask executor"


# what the `jupyter` extra installs, and what those packages bring with them
JUPYTER_ONLY = (
    "jupyterlab",
    "jupyter_server",
    "ipywidgets",
    "anywidget",
    "IPython",
    "traitlets",
    "nest_asyncio2",
    "ipykernel",
    "jupyter_client",
    "comm",
)
BLOCKER = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, NotInstalled())
"""


def _without(blocked: tuple[str, ...], code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "AZURE_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-c", BLOCKER.format(blocked=set(blocked)) + code],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_cli_and_the_library_work_without_the_jupyter_extra(tmp_path):
    demo = ROOT / "notebooks"
    code = (
        "import sys; from orchestra_nb.cli import main; sys.exit(main(["
        f"'run', '--goal', 'Write a market research report on solid-state batteries for EV "
        f"makers', '--functions', {str(demo / 'market_research.py')!r}, '--llm', "
        f"'replay:{demo / 'recordings' / 'market_research.json'}', '--out', 'out']))"
    )
    ran = _without(JUPYTER_ONLY, code, tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert "finished · 9/9 done" in ran.stdout
    assert (tmp_path / "out" / "report.html").exists()
    api = _without(
        JUPYTER_ONLY,
        "import asyncio, orchestra_nb as onb\n"
        "g = onb.TaskGraph([onb.Task('a'), onb.Task('b', dependencies=('a',))])\n"
        "run = asyncio.run(onb.run(g, runner=lambda t, i: t.id, store='sqlite:///r.db'))\n"
        "print(run.state, onb.to_graphviz(g).source.count('->'))\n"
        "try:\n    import IPython\nexcept ImportError:\n    print('no IPython')\n",
        tmp_path,
    )
    assert api.stdout == "finished 1\nno IPython\n", api.stderr


def test_the_notebook_side_without_its_extra_says_what_to_install(tmp_path):
    code = (
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "try:\n    shell.run_line_magic('load_ext', 'orchestra_nb')\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    result = _without(("anywidget", "ipywidgets"), code, tmp_path)
    assert result.stdout == (
        "UsageError orchestra_nb's notebook side needs anywidget, ipywidgets: "
        "pip install 'orchestra-nb[jupyter]'\n"
    ), result.stderr
