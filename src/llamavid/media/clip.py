"""What a video loader returns: sampled frames and what is known of their source, shared by every frame
source (video streams, folders of images, animated GIFs)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError

__all__ = ["VideoClip", "resized_shape"]


@dataclass
class VideoClip:
    """Sampled frames and what we know about their source.

    ``frames`` is ``uint8 (T, H, W, 3)`` RGB, upright. ``timestamps`` are seconds from the
    start of the video stream (``float64 (T,)``); ``indices`` the frame numbers in the
    source, exact when decoded sequentially and derived from time after a seek or in
    approximate mode. ``width``/``height`` are the source's display size (after rotation).
    """

    frames: np.ndarray
    timestamps: np.ndarray
    indices: np.ndarray
    duration: float
    native_fps: float
    width: int
    height: int
    codec: str
    num_source_frames: int | None = None
    rotation: int = 0
    source: str | None = None
    approximate: bool = False
    #: container format, pixel format and how the frames were read ("sequential", "seeking" or "keyframes"),
    #: for logs and debugging
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def resized_shape(width: int, height: int, size: int | None) -> tuple[int, int]:
    """``(width, height)`` with the shortest edge scaled to ``size``, aspect kept.

    Same arithmetic as transformers' CLIP resize (``int(size * long / short)``), so the
    processor's own resize afterwards is a no-op and only its centre crop remains.
    """
    if size is None:
        return width, height
    if size <= 0:
        raise UsageError(f"size must be positive, got {size}")
    if width <= height:
        return size, max(1, int(size * height / width))
    return max(1, int(size * width / height)), size
