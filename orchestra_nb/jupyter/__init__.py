"""The Jupyter layer: ``%load_ext orchestra_nb`` registers ``%%orchestrate`` and ``%orchestra``.

Nothing here is imported by ``import orchestra_nb``; IPython and anywidget load
only when the extension is loaded or a widget is made.
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
    from ._magics import Orchestra

    magics = Orchestra(shell=ipython)
    ipython.register_magics(magics)
    ipython.configurables = [c for c in ipython.configurables if type(c).__name__ != "Orchestra"]
    ipython.configurables.append(magics)


def unload_ipython_extension(ipython: Any) -> None:
    ipython.configurables = [c for c in ipython.configurables if type(c).__name__ != "Orchestra"]
    registry = ipython.magics_manager.magics
    registry["cell"].pop("orchestrate", None)
    registry["line"].pop("orchestra", None)
