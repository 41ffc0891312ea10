"""Frame sources that are not video streams: folders of images and animated GIFs.

A folder is read in natural order (``frame2`` before ``frame10``), each file through
:func:`.images.load_image` (so EXIF and alpha are handled like single images), and is taken
to play at ``frame_rate`` frames a second (1 by default: folders usually hold frames that
were already sampled, such as MovieNet keyframes). An animated GIF keeps the durations
stored with each frame, so its timestamps are real; Pillow composes the frames (disposal,
transparency). Both are then sampled by the same time rule as variable-rate video.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence

from .clip import VideoClip, resized_shape
from .errors import CorruptMediaError, EmptyMediaError, MediaError, MediaTooLargeError
from .images import check_dimensions, load_image, to_rgb
from .sampling import Selector, uniform_times

__all__ = ["IMAGE_SUFFIXES", "load_animated_image", "load_frame_folder", "natural_key"]

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
_DEFAULT_GIF_FRAME_MS = 100  # browsers' fallback for a missing or zero delay
_NUMBER = re.compile(r"(\d+)")


def natural_key(name: str) -> tuple:
    """Sort key putting ``frame2`` before ``frame10`` (digit runs compare as numbers)."""
    return tuple((0, int(part), part) if part.isdigit() else (1, 0, part.lower()) for part in _NUMBER.split(name))


def load_frame_folder(folder: Path, fps, num_frames, max_frames, size, *, frame_rate: float = 1.0):
    """A folder of images as a clip at ``frame_rate``; only the selected files are decoded."""
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise EmptyMediaError(str(folder), "the folder holds no image files")
    times = np.arange(len(files), dtype=np.float64) / frame_rate
    keep = _select(times, len(files) / frame_rate, fps, num_frames, max_frames)
    images = [load_image(files[i]) for i in keep]
    return _clip(images, times[keep], keep, len(files) / frame_rate, frame_rate, "images", str(folder), size, len(files))


def load_animated_image(path: Path, fps, num_frames, max_frames, size, max_decoded_frames: int | None = None):
    """All frames of an animated GIF (or a still one) with timestamps from its frame delays.

    Each kept frame is resized to the output size as soon as it is composed: a few KB of GIF can state a huge
    canvas, and holding every kept frame at canvas size would make memory grow with the canvas, not with what is
    kept. More than ``max_decoded_frames`` frames are refused (each one is composed to read its delay)."""
    durations: list[float] = []
    images: list[Image.Image] = []
    try:
        with Image.open(path) as image:
            check_dimensions(path, *image.size)
            native = image.size
            out = resized_shape(*native, size)
            for frame in ImageSequence.Iterator(image):  # Pillow composes each frame as it seeks
                durations.append((frame.info.get("duration") or _DEFAULT_GIF_FRAME_MS) / 1000.0)
                if max_decoded_frames is not None and len(durations) > max_decoded_frames:
                    raise MediaTooLargeError(str(path), f"the animation has more than {max_decoded_frames} frames, "
                                                        "the limit of decoded frames a video")
            times = np.concatenate([[0.0], np.cumsum(durations)[:-1]])
            duration = float(sum(durations))
            keep = _select(times, duration, fps, num_frames, max_frames)
            for i in keep:  # increasing order: forward seeks only
                image.seek(int(i))
                frame = to_rgb(image.copy())
                images.append(frame if frame.size == out else frame.resize(out, Image.Resampling.BICUBIC))
    except MediaError:
        raise
    except Image.DecompressionBombError as error:
        raise MediaTooLargeError(str(path), str(error)) from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        if not images:
            raise CorruptMediaError(str(path), f"unreadable animated image: {error}") from None
        keep = keep[: len(images)]
    rate = len(durations) / duration if duration > 0 else math.nan
    return _clip(images, times[keep], keep, duration, rate, "gif", str(path), size, len(durations), native)


def _select(times: np.ndarray, duration: float, fps, num_frames, max_frames) -> np.ndarray:
    count = num_frames
    if count is None and max_frames is not None and math.floor(duration * fps - 1e-9) + 1 > max_frames:
        count = max_frames
    if count is None:
        selector = Selector(by_index=False, step=1.0 / fps)
    else:
        selector = Selector(by_index=False, targets=uniform_times(duration, count))
    # Times are known up front, so the online rule runs over them without decoding anything.
    return np.array([i for i, t in enumerate(times) if selector.keep(i, float(t))], dtype=np.int64)


def _clip(images, times, indices, duration, native_fps, codec, source, size, total, native=None):
    width, height = native or images[0].size
    out = resized_shape(width, height, size)
    # Frames of one clip share a size: later frames of another size are fitted to the first.
    arrays = [np.asarray(im if im.size == out else im.resize(out, Image.Resampling.BICUBIC)) for im in images]
    return VideoClip(
        frames=np.stack(arrays),
        timestamps=np.asarray(times, dtype=np.float64),
        indices=np.asarray(indices, dtype=np.int64),
        duration=float(duration),
        native_fps=float(native_fps),
        width=width,
        height=height,
        codec=codec,
        num_source_frames=total,
        source=source,
    )
