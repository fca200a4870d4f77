"""Results as the inspector shows them: Markdown as HTML, images, JSON trees, tables.

``view(value)`` returns a small JSON-able dict the widget's JavaScript renders
(``{"type": "markdown", "html": ...}``, ``{"type": "image", "src": ...}``, ...).
Markdown is rendered here (``_markdown``: mistune, raw HTML escaped), so an LLM
answer containing ``<script>`` shows as text and never runs. Big results are
cut with a note saying so.
"""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from .._markdown import markdown_html
from .._values import Image, Markdown

MAX_TEXT = 200_000  # characters of text or Markdown shown
MAX_ROWS = 200  # rows of a table shown
MAX_JSON = 200_000  # characters of JSON shown as a tree
MAX_IMAGE = 8_000_000  # bytes of an image sent to the browser


def view(value: Any) -> dict[str, Any]:
    """How the inspector should show a result."""
    if isinstance(value, Image):
        return _image(value)
    if type(value).__module__.startswith("matplotlib") and hasattr(value, "savefig"):
        return _image(Image.from_figure(value))
    if type(value).__module__.startswith("pandas") and hasattr(value, "to_html"):
        return _table(value)
    if isinstance(value, str):  # Markdown included
        text, cut = _cut(str(value), MAX_TEXT)
        if isinstance(value, Markdown) or _looks_like_markdown(text):
            return {"type": "markdown", "html": markdown_html(text), "truncated": cut}
        return {"type": "text", "text": text, "truncated": cut}
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return {"type": "bytes", "size": len(data), "preview": data[:64].hex(" ")}
    if value is None or isinstance(value, bool | int | float | dict | list | tuple):
        try:
            text = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            return _repr(value)
        if len(text) > MAX_JSON:
            return {"type": "text", "text": text[:MAX_JSON], "truncated": True}
        return {"type": "json", "data": json.loads(text), "truncated": False}
    return _repr(value)


def _looks_like_markdown(text: str) -> bool:
    return any(mark in text for mark in ("# ", "**", "\n- ", "\n* ", "\n1. ", "](", "`", "|"))


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def _image(image: Image) -> dict[str, Any]:
    if len(image.data) > MAX_IMAGE:
        return {"type": "text", "text": f"{image!r} is too large to show here", "truncated": True}
    src = f"data:{image.mime};base64,{base64.b64encode(image.data).decode()}"
    return {"type": "image", "src": src, "mime": image.mime, "size": len(image.data)}


def _table(frame: Any) -> dict[str, Any]:
    rows = len(frame)
    shown = frame.head(MAX_ROWS)
    return {
        "type": "table",
        "html": shown.to_html(border=0, classes="onb-table", escape=True),
        "rows": rows,
        "truncated": rows > MAX_ROWS,
    }


def _repr(value: Any) -> dict[str, Any]:
    text, cut = _cut(repr(value), MAX_TEXT)
    return {"type": "text", "text": text, "truncated": cut}


def plain_html(value: Any) -> str:
    """The same view as an HTML fragment (for outputs without the widget)."""
    shown = view(value)
    kind = shown["type"]
    if kind in ("markdown", "table"):
        return shown["html"]
    if kind == "image":
        return f'<img src="{shown["src"]}" alt="result">'
    if kind == "json":
        return f"<pre>{html.escape(json.dumps(shown['data'], indent=2, ensure_ascii=False))}</pre>"
    if kind == "bytes":
        return f"<pre>{shown['size']} bytes: {html.escape(shown['preview'])}</pre>"
    return f"<pre>{html.escape(shown['text'])}</pre>"
