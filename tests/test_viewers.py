"""Result viewers: the right view per type, escaped, and cut when large."""

from __future__ import annotations

from orchestra_nb import Image, Markdown
from orchestra_nb.jupyter._viewers import MAX_ROWS, MAX_TEXT, plain_html, view


def test_markdown_is_html_with_raw_html_escaped():
    text = "# Title\n\n<script>alert(1)</script>\n\n**bold** [x](javascript:alert(1))"
    shown = view(Markdown(text))
    assert shown["type"] == "markdown"
    assert "<h1>Title</h1>" in shown["html"]
    assert "&lt;script&gt;" in shown["html"] and "<script>" not in shown["html"]
    assert "javascript:" not in shown["html"]
    assert "<strong>bold</strong>" in shown["html"]


def test_plain_text_stays_text_and_markdownish_text_renders():
    assert view("just words") == {"type": "text", "text": "just words", "truncated": False}
    assert view("- a\n- b\n**x**")["type"] == "markdown"


def test_images_become_data_uris():
    shown = view(Image(b"\x89PNGdata", "image/png"))
    assert shown["type"] == "image"
    assert shown["src"].startswith("data:image/png;base64,")
    assert shown["size"] == 8


def test_figures_are_drawn():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.bar(["a", "b"], [1, 2])
    assert view(fig)["src"].startswith("data:image/png;base64,iVBOR")


def test_json_is_a_tree():
    shown = view({"makers": [{"name": "A", "share": 0.5}], "n": 1})
    assert shown == {
        "type": "json",
        "data": {"makers": [{"name": "A", "share": 0.5}], "n": 1},
        "truncated": False,
    }
    assert view([1, 2])["type"] == "json"
    assert view(None)["type"] == "json"


def test_dataframes_are_tables_cut_to_max_rows():
    import pandas as pd

    frame = pd.DataFrame({"x": range(MAX_ROWS + 50), "label": ["<b>"] * (MAX_ROWS + 50)})
    shown = view(frame)
    assert shown["type"] == "table"
    assert shown["rows"] == MAX_ROWS + 50 and shown["truncated"] is True
    assert shown["html"].count("<tr>") <= MAX_ROWS + 1
    assert "&lt;b&gt;" in shown["html"]


def test_long_text_is_cut():
    shown = view("x" * (MAX_TEXT + 10))
    assert shown["truncated"] is True and len(shown["text"]) == MAX_TEXT


def test_bytes_and_other_objects():
    assert view(b"\x00\x01") == {"type": "bytes", "size": 2, "preview": "00 01"}

    class Thing:
        def __repr__(self):
            return "<Thing & more>"

    assert view(Thing()) == {"type": "text", "text": "<Thing & more>", "truncated": False}
    assert plain_html(Thing()) == "<pre>&lt;Thing &amp; more&gt;</pre>"
