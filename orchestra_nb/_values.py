"""Result types that say how they should be shown: Markdown text and images.

LLM tasks return ``Markdown``; chart functions return ``Image`` (or a matplotlib
figure, which the stores keep as a PNG ``Image``). Both display themselves in
Jupyter and survive every store through the codecs.
"""

from __future__ import annotations

import mimetypes
import os
from dataclasses import dataclass
from typing import Any

_SUFFIX_MIME = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


class Markdown(str):
    """Text to be rendered as Markdown (what LLM tasks return)."""

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Image:
    """Image bytes with their mime type (PNG by default)."""

    data: bytes
    mime: str = "image/png"

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes | bytearray | memoryview):
            raise TypeError(f"Image data must be bytes, not {type(self.data).__name__}")
        object.__setattr__(self, "data", bytes(self.data))
        if not self.mime.startswith("image/"):
            raise ValueError(f"not an image mime type: {self.mime!r}")

    @classmethod
    def from_figure(cls, fig: Any, *, format: str = "png", dpi: int = 100) -> Image:
        """Save a matplotlib figure (PNG or SVG) without keeping it open."""
        import io

        buffer = io.BytesIO()
        fig.savefig(buffer, format=format, dpi=dpi, bbox_inches="tight")
        try:
            import matplotlib.pyplot as plt

            plt.close(fig)
        except ImportError:  # pragma: no cover - a figure implies matplotlib
            pass
        mime = "image/svg+xml" if format == "svg" else f"image/{format}"
        return cls(buffer.getvalue(), mime)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Image:
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        mime = _SUFFIX_MIME.get(suffix) or mimetypes.guess_type(os.fspath(path))[0]
        if not mime or not mime.startswith("image/"):
            raise ValueError(f"cannot tell the image type of {os.fspath(path)!r}")
        with open(path, "rb") as fh:
            return cls(fh.read(), mime)

    def __repr__(self) -> str:
        return f"Image({self.mime}, {len(self.data):,} bytes)"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        if self.mime == "image/svg+xml":
            return {self.mime: self.data.decode("utf-8", "replace"), "text/plain": repr(self)}
        return {self.mime: self.data, "text/plain": repr(self)}

    def _repr_png_(self) -> bytes | None:
        return self.data if self.mime == "image/png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self.data if self.mime == "image/jpeg" else None

    def _repr_svg_(self) -> str | None:
        return self.data.decode("utf-8", "replace") if self.mime == "image/svg+xml" else None
