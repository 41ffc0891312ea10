"""Test media made at test time: every video frame carries its own index in its pixels.

A frame is a 2x2 grid of flat grey blocks; the blocks hold the frame index in base 8
(most significant first) as levels ``32 * digit + 16``. Flat blocks survive lossy codecs,
so :func:`read_index` recovers exactly which source frame the loader returned.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

LEVEL_STEP = 32


def index_frame(index: int, width: int = 32, height: int = 32) -> np.ndarray:
    """RGB uint8 (height, width, 3) frame encoding ``index`` (0..4095)."""
    digits = [(index >> shift) & 7 for shift in (9, 6, 3, 0)]
    frame = np.empty((height, width, 3), np.uint8)
    hh, hw = height // 2, width // 2
    for k, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        frame[r * hh : (r + 1) * hh if r == 0 else height, c * hw : (c + 1) * hw if c == 0 else width] = (
            LEVEL_STEP * digits[k] + LEVEL_STEP // 2
        )
    return frame


def read_index(frames: np.ndarray) -> np.ndarray:
    """Frame indices encoded by :func:`index_frame`, for a (T, H, W, 3) or (H, W, 3) array."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    _, h, w, _ = frames.shape
    qh, qw = max(1, h // 8), max(1, w // 8)  # centre of each block, away from edges
    centres = ((h // 4, w // 4), (h // 4, 3 * w // 4), (3 * h // 4, w // 4), (3 * h // 4, 3 * w // 4))
    out = np.zeros(len(frames), np.int64)
    for cy, cx in centres:
        level = frames[:, cy - qh : cy + qh, cx - qw : cx + qw].astype(np.float64).mean(axis=(1, 2, 3))
        digit = np.clip(np.round((level - LEVEL_STEP // 2) / LEVEL_STEP), 0, 7).astype(np.int64)
        out = out * 8 + digit
    return out


def make_video(
    path: Path,
    *,
    codec: str = "libx264",
    fps: int = 25,
    num_frames: int = 250,
    size: tuple[int, int] = (32, 32),
    pix_fmt: str = "yuv420p",
    gop: int | None = None,
    times_ms: list[int] | None = None,
    rotation: int | None = None,
    audio: bool = False,
    start_pts: int = 0,
    options: dict | None = None,
    container_options: dict | None = None,
    frame_fn=index_frame,
) -> Path:
    """Encode a clip with PyAV. ``times_ms`` gives variable frame times (ms) instead of ``fps``."""
    width, height = size
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        opts = dict(options or {})
        if gop is not None:
            opts["g"] = str(gop)
            if codec == "libx264":
                opts["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        stream.options = opts
        if times_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
            stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            if not hasattr(stream, "set_display_rotation"):
                pytest.skip(f"PyAV {av.__version__} cannot write rotation metadata (set_display_rotation)")
            stream.set_display_rotation(rotation)
        audio_stream = container.add_stream("aac", rate=16000) if audio else None
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_fn(i, width, height), format="rgb24")
            if times_ms is not None:
                frame.pts, frame.time_base = times_ms[i] + start_pts, Fraction(1, 1000)
            else:
                frame.pts = i + start_pts
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
        if audio_stream is not None:
            _write_audio(container, audio_stream, num_frames / fps)
    return path


def _write_audio(container, stream, seconds: float) -> None:
    rate = stream.rate
    samples = int(seconds * rate)
    t = np.arange(samples) / rate
    wave = (0.2 * np.sin(2 * math.pi * 440 * t)).astype(np.float32)[None]
    chunk = 1024
    for start in range(0, samples, chunk):
        frame = av.AudioFrame.from_ndarray(wave[:, start : start + chunk], format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def make_audio_only(path: Path, seconds: float = 2.0) -> Path:
    with av.open(str(path), "w") as container:
        _write_audio(container, container.add_stream("aac", rate=16000), seconds)
    return path


def has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:
        return False
    return True


def ffmpeg_binary() -> str | None:
    return shutil.which("ffmpeg")


def run_ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", *args], check=True, capture_output=True)
