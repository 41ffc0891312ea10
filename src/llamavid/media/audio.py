"""Audio tracks of videos as 16 kHz mono float32, the input speech recognisers (Whisper) expect.

Any codec FFmpeg decodes (AAC in mp4, Opus in webm, MP3, ...) goes through PyAV's resampler, which also mixes
every layout down to mono. Decoding is done in windows (`audio_windows`) so that a feature extractor working
through an hour-long film never holds more than one window of samples: a full film at 16 kHz would be ~230 MB
of float32, and the recogniser only needs a window at a time.

Time zero is the first decoded sample of the first audio stream; the window starting times are exact multiples
of the window length (counted in samples, so they do not drift over a long film).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from .containers import ffmpeg_reason, open_container
from .errors import CorruptMediaError, MediaNotFoundError

__all__ = ["SAMPLE_RATE", "audio_windows", "has_audio", "load_audio"]

SAMPLE_RATE = 16000


def _open(path: Path):
    """The container, opened as the video loader opens it (same options for old PyAV, same errors)."""
    if not path.is_file():
        raise MediaNotFoundError(os.fspath(path), "no such file")
    with open(path, "rb") as handle:
        head = handle.read(16)
    return open_container(path, head)


def has_audio(path: str | os.PathLike) -> bool:
    """Whether the file has an audio stream (without decoding anything)."""
    with _open(Path(path)) as container:
        return bool(container.streams.audio)


def audio_windows(
    path: str | os.PathLike, window_seconds: float = 600.0, rate: int = SAMPLE_RATE
) -> Iterator[np.ndarray]:
    """Consecutive windows of the first audio track, `window_seconds` long each (the last one shorter).

    Window k starts at k * window_seconds. Yields nothing when the file has no audio stream (check `has_audio`
    first to tell "silent film" from "no audio track"). Raises `CorruptMediaError` when decoding fails before
    the end; samples decoded up to a damaged packet are kept, as FFmpeg skips what it cannot decode.
    """
    p = Path(path)
    window = max(int(round(window_seconds * rate)), 1)
    with _open(p) as container:
        if not container.streams.audio:
            return
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pending: list[np.ndarray] = []
        held = 0
        try:
            for frame in _frames(container, stream):
                for out in resampler.resample(frame):
                    pending.append(out.to_ndarray().reshape(-1))
                    held += pending[-1].size
                while held >= window:
                    samples = np.concatenate(pending)
                    yield samples[:window]
                    pending, held = [samples[window:].copy()], samples.size - window
        except av.error.FFmpegError as error:
            raise CorruptMediaError(os.fspath(p), f"cannot decode the audio ({ffmpeg_reason(error)})") from None
        rest = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        if rest.size:
            yield rest.astype(np.float32, copy=False)


def _frames(container, stream) -> Iterator[av.AudioFrame]:
    """Decoded frames, then None: the resampler flushes what it buffered when given None."""
    yield from container.decode(stream)
    yield None


def load_audio(path: str | os.PathLike, rate: int = SAMPLE_RATE) -> np.ndarray | None:
    """The whole first audio track (for short clips); None when the file has no audio stream."""
    if not has_audio(path):
        return None
    windows = list(audio_windows(path, window_seconds=3600.0, rate=rate))
    return np.concatenate(windows) if windows else np.zeros(0, np.float32)
