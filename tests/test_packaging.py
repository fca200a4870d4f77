"""The project installs the same things everywhere, and imports fast."""

from __future__ import annotations

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
