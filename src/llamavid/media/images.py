"""Image loading: anything Pillow opens, from anywhere a user or a server may hand us one.

``load_image`` turns a path, URL, ``data:`` URL, base64 string, bytes or PIL image into
an RGB ``PIL.Image`` the way the original LLaMA-VID saw its training images
(``Image.open(path).convert("RGB")``), with three deliberate differences:

* EXIF orientation is applied, so phone photos are upright (the original ignored it);
* transparent pixels are composited on **white** instead of being dropped to whatever
  colour the file stored under them (``convert("RGB")`` keeps hidden garbage, often black);
  white is what a viewer shows and keeps line art readable; the processor's pad colour is
  applied later and only outside the picture;
* 16-bit and 32-bit greyscale (``I;16``, ``I``, ``F``) are scaled to 8 bits by their
  bit depth instead of being clipped at 255 by Pillow.

Only the first frame of an animated file is used here; ``load_video`` reads all frames.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    MediaTooLargeError,
    UnsupportedMediaError,
)

__all__ = ["MAX_PIXELS", "MAX_SIDE", "ImageSource", "base64_bytes", "check_dimensions", "load_image", "max_pixels",
           "to_rgb"]

#: Largest accepted side. Real photos and videos stay far below; a file claiming more is
#: almost always hostile or broken, and decoding it would exhaust memory.
MAX_SIDE = 16384
#: Largest accepted pixel count when Pillow's own limit is off: Pillow's default limit
#: (``Image.MAX_IMAGE_PIXELS``, about 89 million pixels, 268 MB as RGB) is the one used
#: otherwise, read at each check so that an application that changes Pillow's limit changes
#: this one. Pillow itself only warns between its limit and twice it, so a 13000x13000 PNG
#: of a few hundred KB would decode to 500 MB and more; this check refuses it before decoding.
MAX_PIXELS = 89_478_485


def max_pixels() -> int:
    """The pixel limit in force: Pillow's, or :data:`MAX_PIXELS` when Pillow's is turned off (None)."""
    return Image.MAX_IMAGE_PIXELS or MAX_PIXELS

URL_TIMEOUT_S = 30.0
_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image


def check_dimensions(path: object, width: int, height: int) -> None:
    """Raise :class:`MediaTooLargeError` (or corrupt, for non-positive sizes) before decoding."""
    if width <= 0 or height <= 0:
        raise CorruptMediaError(_name(path), f"invalid dimensions {width}x{height}")
    limit = max_pixels()
    if width > MAX_SIDE or height > MAX_SIDE or width * height > limit:
        raise MediaTooLargeError(
            _name(path),
            f"dimensions {width}x{height} exceed the limit ({MAX_SIDE} px a side, {limit} pixels)",
        )


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; alpha is composited on ``background``."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # Pillow clips these to 0..255 when converting to "L"; scale by the real range instead.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max(initial=0) > 255 else 255.0
        grey = np.clip(array * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if (mode == "P" and "transparency" in image.info) or mode in ("PA", "La"):
        image = image.convert("RGBA")
    elif mode == "P":
        return image.convert("RGB")
    if image.mode in ("RGBA", "LA", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    # CMYK (Pillow inverts Adobe CMYK JPEGs itself), YCbCr, LAB, HSV, L, 1, ...
    return image.convert("RGB")


def load_image(source: ImageSource, *, timeout: float = URL_TIMEOUT_S) -> Image.Image:
    """Load an image as an upright RGB ``PIL.Image``.

    ``source`` may be a path, an ``http(s)://`` URL (fetched with ``urllib``, ``timeout``
    seconds), a ``data:`` URL, a bare base64 string, raw bytes, or a PIL image. Raises a
    :class:`~llamavid.media.errors.MediaError` subclass on any failure.
    """
    if isinstance(source, Image.Image):
        return _finish(source, None)
    data, name = _read_source(source, timeout)
    if len(data) == 0:
        raise EmptyMediaError(name, "the image data is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedMediaError(name, "not an image file Pillow can read") from None
    except Image.DecompressionBombError as error:
        raise MediaTooLargeError(name, str(error)) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise CorruptMediaError(name, f"unreadable image: {error}") from None
    return _finish(image, name)


def _finish(image: Image.Image, name: str | None) -> Image.Image:
    check_dimensions(name, *image.size)
    try:
        image.seek(0)  # first frame of animations; a no-op for stills
        image.load()
        upright = ImageOps.exif_transpose(image)
        rgb = to_rgb(upright if upright is not None else image)
    except Image.DecompressionBombError as error:
        raise MediaTooLargeError(name, str(error)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise CorruptMediaError(name, f"truncated or damaged image: {error}") from None
    rgb.load()
    return rgb


def _read_source(source: str | os.PathLike | bytes | bytearray | memoryview, timeout: float) -> tuple[bytes, str | None]:
    """Return the encoded bytes and a display name for errors."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), None
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"unsupported image source type {type(source).__name__}")
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.startswith(("http://", "https://")):
        return _fetch_url(text, timeout), text
    if text.startswith("data:"):
        header, _, payload = text.partition(",")
        if ";base64" not in header:
            raise UnsupportedMediaError(_short(text), "data: URL without base64 payload")
        return _b64(payload, _short(text)), _short(text)
    path = Path(text).expanduser()
    try:
        is_file, exists = path.is_file(), path.exists()
    except OSError:  # a long base64 string is not a valid file name
        is_file = exists = False
    if is_file:
        try:
            return path.read_bytes(), text
        except OSError as error:
            raise MediaError(text, f"cannot read the file: {error.strerror or error}") from None
    if exists:
        raise UnsupportedMediaError(text, "not a regular file")
    if len(text) > 256 and _BASE64_RE.match(text[:4096]):
        return _b64(text, None), None
    raise MediaNotFoundError(text, "no such file")


def _fetch_url(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "llamavid"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except OSError as error:  # URLError, HTTPError and timeouts are all OSErrors
        raise MediaError(url, f"download failed: {error}") from None


def base64_bytes(payload: str) -> bytes:
    """The bytes of base64 text (whitespace, missing padding and the URL-safe alphabet are fine), as images sent
    inline are read; `CorruptMediaError` when it is not base64."""
    return _b64(payload, None)


def _b64(payload: str, name: str | None) -> bytes:
    payload = "".join(payload.split())
    try:
        if "-" in payload or "_" in payload:
            return base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CorruptMediaError(name, "invalid base64 data") from None


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _name(path: object) -> str | None:
    return None if path is None else os.fspath(path) if isinstance(path, str | os.PathLike) else str(path)
