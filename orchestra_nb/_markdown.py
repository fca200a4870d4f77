"""Markdown to HTML for reports and the inspector, with raw HTML escaped.

LLM answers are untrusted: a ``<script>`` in one must show as text. mistune
(already a Jupyter dependency) renders with ``escape=True`` and drops unsafe
link schemes such as ``javascript:``.
"""

from __future__ import annotations


def markdown_html(text: str) -> str:
    """Markdown to HTML with raw HTML escaped (tables and strikethrough on)."""
    import mistune

    render = mistune.create_markdown(escape=True, plugins=["table", "strikethrough", "url"])
    return str(render(text))
