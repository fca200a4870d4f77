"""Turning results into bytes and back, apart from where the bytes are kept.

Each codec has a short name stored next to the payload, so a store can decode
what another process wrote. Encoding tries codecs in order; the first that
accepts the value wins. Pickle is only ever used — for encoding *and* decoding
— when the store was opened with a signing key: the payload carries an
HMAC-SHA256 of the pickled bytes, checked with ``hmac.compare_digest`` before
``pickle.loads`` is called. Anything else is refused without unpickling.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .._errors import StoreError, UnsafeDataError
from .._values import Image, Markdown


@dataclass(frozen=True)
class Codec:
    """How one family of values becomes bytes: a name, a test, and both directions."""

    name: str
    accepts: Callable[[Any], bool]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    mime: str | Callable[[Any], str] = "application/octet-stream"

    def mime_of(self, value: Any) -> str:
        return self.mime(value) if callable(self.mime) else self.mime


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 200:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):  # tuples come back as lists
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def _is_dataframe(value: Any) -> bool:
    module = type(value).__module__
    if not module.startswith("pandas"):
        return False
    import pandas as pd

    return isinstance(value, pd.DataFrame)


def _encode_dataframe(frame: Any) -> bytes:
    return frame.to_json(orient="table", date_format="iso", index=True).encode()


def _decode_dataframe(payload: bytes) -> Any:
    import pandas as pd

    return pd.read_json(io.StringIO(payload.decode()), orient="table")


def _is_figure(value: Any) -> bool:
    return type(value).__module__.startswith("matplotlib") and hasattr(value, "savefig")


def _encode_image(value: Image) -> bytes:
    mime = value.mime.encode()
    return len(mime).to_bytes(1, "big") + mime + value.data


def _decode_image(payload: bytes) -> Image:
    size = payload[0]
    return Image(payload[1 + size :], payload[1 : 1 + size].decode())


def _encode_figure(fig: Any) -> bytes:
    return _encode_image(Image.from_figure(fig))


BUILTIN: tuple[Codec, ...] = (
    Codec("markdown", lambda v: isinstance(v, Markdown), lambda v: str(v).encode(),
          lambda b: Markdown(b.decode()), "text/markdown"),
    Codec("text", lambda v: isinstance(v, str), lambda v: v.encode(), lambda b: b.decode(),
          "text/plain"),
    Codec("bytes", lambda v: isinstance(v, bytes | bytearray | memoryview), bytes, bytes),
    Codec("image", lambda v: isinstance(v, Image), _encode_image, _decode_image,
          lambda v: v.mime),
    Codec("json", _is_json, lambda v: json.dumps(v, ensure_ascii=False).encode(),
          lambda b: json.loads(b), "application/json"),
    Codec("dataframe", _is_dataframe, _encode_dataframe, _decode_dataframe,
          "application/vnd.dataframe+json"),
    Codec("figure", _is_figure, _encode_figure, _decode_image, "image/png"),
)  # fmt: skip


class Codecs:
    """The codecs a store uses, in the order they are tried; add your own with ``register``."""

    def __init__(
        self, codecs: Iterable[Codec] = BUILTIN, *, signing_key: bytes | str | None = None
    ) -> None:
        self._codecs: dict[str, Codec] = {c.name: c for c in codecs}
        self._key = signing_key.encode() if isinstance(signing_key, str) else signing_key

    @property
    def signed_pickle(self) -> bool:
        return bool(self._key)

    @property
    def signing_key(self) -> bytes | None:
        """The key entries are signed with (None: unsigned)."""
        return self._key

    def __iter__(self) -> Iterator[Codec]:
        """The codecs in the order they are tried."""
        return iter(self._codecs.values())

    def register(self, codec: Codec, *, first: bool = True) -> None:
        """Add a codec; by default it is tried before the built-in ones."""
        if first:
            self._codecs = {
                codec.name: codec,
                **{k: v for k, v in self._codecs.items() if k != codec.name},
            }
        else:
            self._codecs[codec.name] = codec

    def with_key(self, signing_key: bytes | str | None) -> Codecs:
        return Codecs(self._codecs.values(), signing_key=signing_key)

    def encode(self, value: Any) -> tuple[str, str, bytes]:
        """(codec name, mime type, payload) for a value; StoreError if nothing fits."""
        for codec in self._codecs.values():
            if codec.accepts(value):
                return codec.name, codec.mime_of(value), codec.encode(value)
        if self._key:
            return "pickle", "application/x-python-pickle", self._sign_pickle(value)
        raise StoreError(
            f"cannot store a result of type {type(value).__module__}.{type(value).__qualname__}: "
            "return text, bytes, JSON data, an Image or a DataFrame, register a codec, or open "
            "the store with signing_key=... to allow signed pickle"
        )

    def decode(self, codec_name: str, payload: bytes, *, key: str = "") -> Any:
        if codec_name == "pickle":
            return self._load_pickle(payload, key)
        codec = self._codecs.get(codec_name)
        if codec is None:
            raise StoreError(f"entry {key!r} was stored with unknown codec {codec_name!r}")
        return codec.decode(payload)

    def _sign_pickle(self, value: Any) -> bytes:
        import pickle

        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        assert self._key
        return hmac.new(self._key, data, hashlib.sha256).digest() + data

    def _load_pickle(self, payload: bytes, key: str) -> Any:
        if not self._key:
            raise UnsafeDataError(
                f"entry {key!r} was stored with pickle; open the store with the signing key it "
                "was written with to load it"
            )
        signature, data = payload[:32], payload[32:]
        expected = hmac.new(self._key, data, hashlib.sha256).digest()
        if len(payload) < 32 or not hmac.compare_digest(signature, expected):
            raise UnsafeDataError(
                f"entry {key!r} has a missing or wrong signature; refusing to unpickle it"
            )
        import pickle

        return pickle.loads(data)  # verified above: written by a holder of the signing key
