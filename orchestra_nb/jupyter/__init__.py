"""The Jupyter layer: ``%load_ext orchestra_nb`` registers ``%%orchestrate`` and ``%orchestra``.

Nothing here is imported by ``import orchestra_nb``; IPython, anywidget, networkx and
graphviz load when the extension is loaded: importing them takes a quarter of a second, which
``%load_ext`` may take, but the cell that first shows a plan should not (it holds the
kernel's loop while it runs).
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


#: What the notebook side needs beyond the library (the ``jupyter`` extra).
NEEDS = ("anywidget", "ipywidgets", "traitlets", "nest_asyncio2")


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def load_ipython_extension(ipython: Any) -> None:
    missing = [name for name in NEEDS if not _installed(name)]
    if missing:
        from IPython.core.error import UsageError

        raise UsageError(
            f"orchestra_nb's notebook side needs {', '.join(missing)}: "
            "pip install 'orchestra-nb[jupyter]'"
        )
    import contextlib

    import networkx  # noqa: F401  (every TaskGraph is one)

    with contextlib.suppress(ImportError):
        import graphviz  # noqa: F401  (the static drawing beside a small plan's widget)

    from ._magics import Orchestra
    from ._widget import start_threads  # imports anywidget and ipywidgets

    start_threads()

    magics = Orchestra(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables = [c for c in ipython.configurables if type(c).__name__ != "Orchestra"]
    ipython.configurables.append(magics)


def unload_ipython_extension(ipython: Any) -> None:
    ipython.configurables = [c for c in ipython.configurables if type(c).__name__ != "Orchestra"]
    registry = ipython.magics_manager.magics
    registry["cell"].pop("orchestrate", None)
    registry["line"].pop("orchestra", None)
