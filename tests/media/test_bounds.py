"""What decoding a hostile or lying file may cost: memory that grows with what is kept (not with a GIF's canvas or
a PNG's stated size, measured as the decoder's peak memory in a fresh process), a bound on decoded frames, and the
real frames of a container that claims far more than it holds."""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llamavid.media import MediaTooLargeError, load_image, load_video
from llamavid.testing import big_canvas_gif, decoder_peak, huge_png

sys.path.insert(0, str(Path(__file__).parent))
from _make_media import make_video  # noqa: E402


def test_gif_memory_grows_with_the_kept_frames_not_the_canvas(tmp_path):
    gif = big_canvas_gif(tmp_path / "canvas.gif")
    assert gif.stat().st_size < 100_000
    measured = decoder_peak("video", gif)
    assert measured["outcome"] == "16 frames"
    # measured: 267 MB when the kept frames were held at canvas size (16 x 12 MB, and copies), 69 MB now (one
    # canvas being composed and converted at a time; the kept frames at 224 px are 2.4 MB in all)
    assert measured["grew_mb"] < 150, measured


def test_a_huge_png_is_refused_before_decoding(tmp_path):
    """13000 x 13000 lies between Pillow's warning and its error: refused at Pillow's limit, before decoding."""
    png = huge_png(tmp_path / "huge.png")
    assert png.stat().st_size < 1_000_000
    with pytest.raises(MediaTooLargeError, match="13000x13000"):
        load_image(png)
    measured = decoder_peak("image", png)  # measured: 968 MB when it was decoded, under 1 MB now
    assert measured["outcome"] == "MediaTooLargeError" and measured["grew_mb"] < 50, measured


def test_pixel_limit_follows_pillows(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5000)
    with pytest.raises(MediaTooLargeError, match="5000 pixels"):
        load_image(tmp_path / "small.png")


def test_decoded_frames_are_bounded_before_and_while_decoding(tmp_path):
    counted = make_video(tmp_path / "counted.mp4", num_frames=300)  # the container counts its frames
    with pytest.raises(MediaTooLargeError, match="300 frames"):
        load_video(counted, fps=1.0, max_decoded_frames=100)
    uncounted = make_video(tmp_path / "uncounted.mkv", num_frames=300)  # Matroska does not: counted as decoded
    with pytest.raises(MediaTooLargeError, match="passed 100"):
        load_video(uncounted, fps=1.0, max_decoded_frames=100)
    assert load_video(counted, fps=1.0, max_decoded_frames=300).frames.shape[0] == 12
    # sparse samples of a long clip with frequent keyframes are reached by seeking: few frames decoded, allowed
    seekable = make_video(tmp_path / "seekable.mp4", num_frames=3000, gop=25)
    clip = load_video(seekable, num_frames=8, max_decoded_frames=1000)
    assert clip.frames.shape[0] == 8 and clip.extra["decoding"] == "seeking"
    gif = big_canvas_gif(tmp_path / "many.gif", side=64, frames=30)
    with pytest.raises(MediaTooLargeError, match="more than 10 frames"):
        load_video(gif, fps=1.0, max_decoded_frames=10)


def test_a_container_claiming_three_hours_yields_its_real_frames(tmp_path):
    """Two frames in a Matroska file whose header and tag say 3 hours: uniform sampling spreads over what is
    there instead of keeping only the first frame."""
    data = bytearray(make_video(tmp_path / "two.mkv", num_frames=2, fps=25).read_bytes())
    at = data.find(b"\x44\x89\x88")  # Segment Info Duration, a float64 in milliseconds
    struct.pack_into(">d", data, at + 3, 3 * 3600 * 1000.0)
    tag = data.find(b"00:00:00.08")
    data[tag : tag + 8] = b"03:00:00"
    lying = tmp_path / "three-hours.mkv"
    lying.write_bytes(bytes(data))
    clip = load_video(lying, fps=1.0, max_frames=8)
    assert clip.frames.shape[0] == 2
    assert not np.array_equal(clip.frames[0], clip.frames[1])
