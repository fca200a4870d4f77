"""Codecs on their own: registration, refusal, signatures, and the value types."""

from __future__ import annotations

import pytest

from orchestra_nb import Image, Markdown, StoreError, UnsafeDataError
from orchestra_nb.store import Codec, Codecs, open_store
from orchestra_nb.store._url import redact


def test_order_and_names():
    codecs = Codecs()
    assert codecs.encode(Markdown("# x"))[:2] == ("markdown", "text/markdown")
    assert codecs.encode("x")[:2] == ("text", "text/plain")
    assert codecs.encode(b"x")[0] == "bytes"
    assert codecs.encode(Image(b"..", "image/jpeg"))[:2] == ("image", "image/jpeg")
    assert codecs.encode({"a": (1, 2)})[0] == "json"
    assert codecs.decode("json", codecs.encode({"a": (1, 2)})[2]) == {"a": [1, 2]}


def test_not_json():
    codecs = Codecs()
    for value in ({1: "int key"}, {"x": float("nan")}, {"s": {1, 2}}):
        with pytest.raises(StoreError, match="cannot store a result of type"):
            codecs.encode(value)


def test_register_a_codec_of_your_own():
    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    codecs = Codecs()
    codecs.register(
        Codec(
            "point",
            lambda v: isinstance(v, Point),
            lambda p: f"{p.x},{p.y}".encode(),
            lambda b: Point(*map(int, b.decode().split(","))),
        )
    )
    name, _mime, payload = codecs.encode(Point(1, 2))
    assert name == "point"
    back = codecs.decode(name, payload)
    assert (back.x, back.y) == (1, 2)


async def test_custom_codecs_reach_the_store():
    codecs = Codecs()
    codecs.register(Codec("upper", lambda v: v == "shout", lambda v: b"SHOUT", bytes.decode))
    store = open_store("memory://", codecs=codecs)
    await store.put("k", "shout")
    assert (await store.get_entry("k")).codec == "upper"


def test_signed_pickle_and_tampering():
    signed = Codecs(signing_key="key")
    name, _mime, payload = signed.encode({1, 2})
    assert name == "pickle"
    assert signed.decode(name, payload) == {1, 2}
    tampered = payload[:-1] + bytes([payload[-1] ^ 1])
    with pytest.raises(UnsafeDataError, match="wrong signature"):
        signed.decode(name, tampered, key="k")
    with pytest.raises(UnsafeDataError, match="open the store with the signing key"):
        Codecs().decode(name, payload, key="k")
    with pytest.raises(UnsafeDataError):
        Codecs(signing_key="other").decode(name, payload, key="k")
    with pytest.raises(UnsafeDataError):
        signed.decode(name, b"short", key="k")


def test_unknown_codec_name():
    with pytest.raises(StoreError, match="unknown codec 'zip'"):
        Codecs().decode("zip", b"", key="k")


def test_image_values():
    img = Image(b"\x89PNG....")
    assert repr(img) == "Image(image/png, 8 bytes)"
    assert img._repr_png_() == b"\x89PNG...."
    svg = Image(b"<svg/>", "image/svg+xml")
    assert svg._repr_svg_() == "<svg/>"
    assert svg._repr_mimebundle_()["image/svg+xml"] == "<svg/>"
    with pytest.raises(ValueError, match="not an image"):
        Image(b"x", "text/plain")
    with pytest.raises(TypeError):
        Image("text")  # type: ignore[arg-type]


def test_image_from_file_and_figure(tmp_path):
    path = tmp_path / "a.svg"
    path.write_text("<svg/>")
    assert Image.from_file(path) == Image(b"<svg/>", "image/svg+xml")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    img = Image.from_figure(fig, format="svg")
    assert img.mime == "image/svg+xml"
    assert b"<svg" in img.data


def test_markdown_is_a_str():
    md = Markdown("# hi")
    assert md == "# hi"
    assert md._repr_markdown_() == "# hi"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host/1", "redis://user:***@host/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_redact(url, shown):
    assert redact(url) == shown


def test_unknown_scheme():
    from orchestra_nb import ConfigError

    with pytest.raises(ConfigError, match=r"unsupported store URL 'postgres://u:\*\*\*@h/db'"):
        open_store("postgres://u:secret@h/db")
