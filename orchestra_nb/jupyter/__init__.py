"""The Jupyter layer: ``%load_ext orchestra_nb`` registers ``%%orchestrate`` and ``%orchestra``.

Nothing here is imported by ``import orchestra_nb``; IPython and anywidget load
only when the extension is loaded or a widget is made.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
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
