"""Broken inputs end in one MediaError subclass with the path and a one-line reason."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from _make_media import make_audio_only, make_video, read_index

from llamavid.media import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    MediaTooLargeError,
    MediaWarning,
    NoVideoStreamError,
    UnsupportedMediaError,
    load_image,
    load_video,
)


def check_message(error: MediaError, path) -> None:
    text = str(error)
    assert "\n" not in text and str(path) in text and error.reason in text
    assert error.path == str(path)


def test_missing_file(tmp_path):
    path = tmp_path / "nope.mp4"
    with pytest.raises(MediaNotFoundError) as info:
        load_video(path)
    check_message(info.value, path)
    assert isinstance(info.value, FileNotFoundError)
    with pytest.raises(MediaNotFoundError):
        load_image(path)


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(EmptyMediaError) as info:
        load_video(path)
    check_message(info.value, path)
    with pytest.raises(EmptyMediaError):
        load_image(path)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(UnsupportedMediaError) as info:
        load_video(path)
    check_message(info.value, path)
    with pytest.raises(UnsupportedMediaError):
        load_image(path)


def test_audio_only(tmp_path):
    path = make_audio_only(tmp_path / "voice.m4a")
    with pytest.raises(NoVideoStreamError) as info:
        load_video(path)
    check_message(info.value, path)
    assert "audio" in info.value.reason


def test_truncated_mp4_without_index(cfr_h264, tmp_path):
    # PyAV writes the moov index at the end: a cut file has no index left.
    data = cfr_h264.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptMediaError) as info:
        load_video(path)
    check_message(info.value, path)


@pytest.mark.parametrize(("suffix", "options"), [("mkv", {}), ("mp4", {"movflags": "faststart"}), ("ts", {})])
def test_corrupt_tail_keeps_earlier_frames_with_a_warning(media, tmp_path, suffix, options):
    source = media.video(f"tail.{suffix}", fps=10, num_frames=100, gop=10, container_options=options)
    data = source.read_bytes()
    path = tmp_path / f"cut.{suffix}"
    path.write_bytes(data[: int(len(data) * 0.7)])  # keyframes dominate: about frame 40 of 100
    if suffix == "ts":
        # MPEG-TS states neither frame count nor duration: a cut stream is just a shorter video.
        clip = load_video(path)
    else:
        with pytest.warns(MediaWarning, match="truncated"):
            clip = load_video(path)
    assert 2 <= len(clip) < 10
    np.testing.assert_array_equal(read_index(clip.frames), np.arange(len(clip)) * 10)


def test_garbage_after_header(media, tmp_path):
    source = media.video("garbage.mkv", fps=10, num_frames=50, gop=10)
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(0)
    start = 300
    data[start:] = rng.integers(0, 256, len(data) - start, dtype=np.uint8).tobytes()
    path = tmp_path / "garbage.mkv"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MediaWarning)
        try:
            clip = load_video(path)
        except MediaError as error:  # nothing decodable: one clean error
            check_message(error, path)
        else:
            assert clip.frames.ndim == 4


def test_unknown_codec(cfr_h264, tmp_path):
    data = cfr_h264.read_bytes()
    assert data.count(b"avc1") >= 1
    path = tmp_path / "unknown_codec.mp4"
    path.write_bytes(data.replace(b"avc1", b"zzzz"))
    with pytest.raises(UnsupportedMediaError) as info:
        load_video(path)
    check_message(info.value, path)


def test_absurd_dimensions(tmp_path):
    path = make_video(tmp_path / "wide.mkv", codec="mjpeg", pix_fmt="yuvj420p", fps=1, num_frames=1, size=(16400, 16))
    with pytest.raises(MediaTooLargeError) as info:
        load_video(path)
    check_message(info.value, path)
    assert "16400x16" in info.value.reason


def test_bad_arguments(cfr_h264):
    for kwargs in ({"fps": 0}, {"fps": -1}, {"fps": float("nan")}, {"num_frames": 0}, {"max_frames": 1.5}):
        with pytest.raises(ValueError):
            load_video(cfr_h264, **kwargs)


def test_empty_folder(tmp_path):
    with pytest.raises(EmptyMediaError):
        load_video(tmp_path)


def test_output_too_large_for_memory(cfr_h264, monkeypatch):
    import llamavid.media.video as video

    monkeypatch.setattr(video, "MAX_OUTPUT_BYTES", 9 * 32 * 32 * 3)
    with pytest.raises(MediaTooLargeError, match="10 frames of 32x32"):
        load_video(cfr_h264)
    assert len(load_video(cfr_h264, max_frames=9)) == 9
    assert load_video(cfr_h264, size=16).frames.shape == (10, 16, 16, 3)
