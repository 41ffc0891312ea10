"""Image loading: formats, modes, EXIF orientation, in-memory sources and errors."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from llamavid.media import (
    CorruptMediaError,
    MediaError,
    MediaTooLargeError,
    UnsupportedMediaError,
    load_image,
    to_rgb,
)


def photo(width=96, height=64) -> Image.Image:
    """A synthetic photo-like RGB image (smooth gradients plus texture)."""
    yy, xx = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(0)
    image = np.stack([xx * 255 // width, yy * 255 // height, (xx + yy) * 127 // (width + height) + 64], -1)
    image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
    return Image.fromarray(image, "RGB")


@pytest.mark.parametrize(("fmt", "suffix"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("BMP", "bmp"), ("TIFF", "tif"), ("GIF", "gif")])
def test_formats(tmp_path, fmt, suffix):
    path = tmp_path / f"photo.{suffix}"
    photo().save(path, fmt)
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (96, 64)
    if fmt in ("PNG", "BMP", "TIFF"):
        np.testing.assert_array_equal(np.asarray(image), np.asarray(photo()))


def test_real_photos(skimage_data):
    for name, size in (("astronaut.png", (512, 512)), ("coffee.png", (600, 400)), ("camera.png", (512, 512))):
        image = load_image(skimage_data / name)
        assert image.mode == "RGB" and image.size == size
    grey = np.asarray(load_image(skimage_data / "camera.png"))
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])  # L expands to equal channels
    logo = load_image(skimage_data / "logo.png")  # RGBA with transparent background
    assert logo.mode == "RGB"
    assert tuple(np.asarray(logo)[0, 0]) == (255, 255, 255)


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert tuple(np.asarray(load_image(path))[0, 0]) == (255, 0, 0)


def test_alpha_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 255, 128))
    out = np.asarray(to_rgb(rgba))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (127, 127, 255)  # half blue over white
    la = Image.new("LA", (2, 2), (0, 0))
    assert tuple(np.asarray(to_rgb(la))[0, 0]) == (255, 255, 255)


def test_palette_with_transparency(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.info["transparency"] = 0
    image.putpixel((0, 0), 0)
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    out = np.asarray(load_image(path))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (10, 200, 30)


@pytest.mark.parametrize("mode", ["L", "1", "CMYK", "I;16", "I", "F", "YCbCr", "LA", "RGBA", "P", "PA"])
def test_every_mode_becomes_rgb(mode):
    source = photo(16, 8)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(source.convert("L")).astype(np.uint16) * 257)
    elif mode == "PA":
        image = source.convert("RGBA").convert("PA")
    else:
        image = source.convert(mode)
    out = to_rgb(image)
    assert out.mode == "RGB" and out.size == (16, 8)
    if mode in ("L", "I;16", "I", "F"):
        np.testing.assert_allclose(np.asarray(out)[..., 0], np.asarray(source.convert("L")), atol=1)


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    array = np.full((4, 4), 65535 // 2, np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    assert np.asarray(load_image(path))[0, 0, 0] in (127, 128)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "cmyk.jpg"
    photo().convert("CMYK").save(path, "JPEG", quality=95)
    out = np.asarray(load_image(path)).astype(int)
    assert np.abs(out - np.asarray(photo()).astype(int)).mean() < 12


@pytest.mark.parametrize(("orientation", "size"), [(1, (96, 64)), (3, (96, 64)), (6, (64, 96)), (8, (64, 96))])
def test_exif_orientation(tmp_path, orientation, size):
    image = photo()
    image.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.png"
    image.save(path, exif=exif)
    out = load_image(path)
    assert out.size == size
    expected = np.asarray(image)
    turned = {1: expected, 3: np.rot90(expected, 2), 6: np.rot90(expected, -1), 8: np.rot90(expected, 1)}[orientation]
    np.testing.assert_array_equal(np.asarray(out), turned)


def test_in_memory_sources(tmp_path):
    buffer = io.BytesIO()
    photo().save(buffer, "PNG")
    data = buffer.getvalue()
    expected = np.asarray(photo())
    encoded = base64.b64encode(data).decode()
    for source in (data, bytearray(data), memoryview(data), f"data:image/png;base64,{encoded}", encoded, photo()):
        np.testing.assert_array_equal(np.asarray(load_image(source)), expected)
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    np.testing.assert_array_equal(np.asarray(load_image(urlsafe)), expected)


def test_url_is_fetched_with_urllib(monkeypatch):
    buffer = io.BytesIO()
    photo().save(buffer, "PNG")
    seen = {}

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def fake_urlopen(request, timeout):
        seen["url"], seen["timeout"] = request.full_url, timeout
        return Response(buffer.getvalue())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    image = load_image("https://example.invalid/cat.png", timeout=5)
    assert image.size == (96, 64) and seen == {"url": "https://example.invalid/cat.png", "timeout": 5}

    def failing(request, timeout):
        raise OSError("network unreachable")

    monkeypatch.setattr("urllib.request.urlopen", failing)
    with pytest.raises(MediaError, match="download failed"):
        load_image("http://example.invalid/x.png")


def test_truncated_jpeg(tmp_path):
    buffer = io.BytesIO()
    photo(256, 256).save(buffer, "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(buffer.getvalue()[:600])
    with pytest.raises(CorruptMediaError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_bad_base64_and_garbage():
    with pytest.raises(MediaError):
        load_image("data:image/png;base64,!!!!")
    with pytest.raises(UnsupportedMediaError):
        load_image(b"definitely not an image")


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


@pytest.mark.parametrize(("width", "height"), [(20000, 10), (16000, 16000)])
def test_absurd_dimensions(tmp_path, width, height):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(width, height))
    with pytest.raises(MediaTooLargeError) as info:
        load_image(path)
    assert str(path) in str(info.value)
