"""Which frames to keep: the sampling rules, separate from decoding so they are testable alone.

Rules (``fps`` sampling is the default; ``num_frames`` asks for a fixed count):

* **Constant frame rate, ``fps`` given** — exactly the original LLaMA-VID rule:
  ``step = round(native_fps / fps)`` and frame indices ``0, step, 2*step, ... < N``, all of
  them. Unlike the original, ``step`` is at least 1, so ``fps`` above the native rate keeps
  every frame and ``fps < 0.5`` no longer crashes with a zero step (the original's does).
* **Variable frame rate** (or a stream whose timestamps drift from ``index / native_fps``)
  — chosen by time: targets ``0, 1/fps, 2/fps, ...`` seconds, each the first frame whose
  timestamp is at or after the target; a target already passed by a long frame is skipped,
  so no frame is returned twice.
* **A fixed count, or more than ``max_frames`` frames** — uniform: ``n`` targets at the
  start of ``n`` equal segments (``index = k * N // n``, or ``k * duration / n`` seconds),
  so the first frame is always kept and ``n`` samples of an ``n``-second clip fall on whole
  seconds, the same frames ``fps=1`` would give.

``Selector`` applies a rule online, one decoded frame at a time, so the decoder converts
to RGB only the frames it keeps and can stop as soon as the last target is reached.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UsageError

__all__ = ["Selector", "fps_step", "original_indices", "uniform_indices", "uniform_times"]

#: Timestamp slack (seconds) when comparing frame times with targets: container time bases
#: (1/90000, 1/1000) round frame times by less than this.
TIME_TOLERANCE = 1e-3


def fps_step(native_fps: float, fps: float) -> int:
    """The original's frame step ``round(native_fps / fps)``, but never below 1."""
    if not (fps > 0 and math.isfinite(fps)):
        raise UsageError(f"fps must be a positive number, got {fps!r}")
    return max(1, round(native_fps / fps))


def original_indices(total_frames: int, native_fps: float, fps: float = 1.0) -> np.ndarray:
    """Frame indices the original keeps for a constant-frame-rate video of ``total_frames``."""
    return np.arange(0, total_frames, fps_step(native_fps, fps), dtype=np.int64)


def uniform_indices(total_frames: int, count: int) -> np.ndarray:
    """``count`` indices at the start of equal segments; fewer when the video is shorter."""
    if count >= total_frames:
        return np.arange(total_frames, dtype=np.int64)
    return np.arange(count, dtype=np.int64) * total_frames // count


def uniform_times(duration: float, count: int) -> np.ndarray:
    """``count`` target times (seconds) at the start of equal segments of ``duration``."""
    return np.arange(count, dtype=np.float64) * (duration / count)


class Selector:
    """Keep the first frame at or past each target, online.

    Targets are frame indices (``by_index=True``, exact integers) or times in seconds. They
    are either an explicit sorted array, after which :attr:`done` turns true, or the endless
    sequence ``0, step, 2*step, ...``. ``keep(index, time)`` must be called for every decoded
    frame in presentation order; it returns whether to keep that frame.
    """

    def __init__(self, *, by_index: bool, step: float | None = None, targets: np.ndarray | None = None):
        if (step is None) == (targets is None):
            raise ValueError("give exactly one of step and targets")
        self.by_index = by_index
        self.step = step
        self.targets = None if targets is None else np.asarray(targets, dtype=np.float64)
        self._k = 0  # number of the next target
        self._tol = 0.5 if by_index else TIME_TOLERANCE

    @property
    def done(self) -> bool:
        return self.targets is not None and self._k >= len(self.targets)

    def next_target(self) -> float:
        """The next target (index or seconds); ``inf`` when all explicit targets are met."""
        if self.targets is not None:
            return float(self.targets[self._k]) if self._k < len(self.targets) else math.inf
        return self._k * self.step

    def is_target(self, index: int) -> bool:
        """Whether frame ``index`` is itself a target (index selectors only; no state change).

        Lets the decoder skip non-reference frames it will not keep: on a constant-rate
        stream every index exists, so a frame that is not a target is never the one kept.
        """
        if self.targets is None:
            return index >= 0 and index % self.step == 0
        k = int(np.searchsorted(self.targets, index))
        return k < len(self.targets) and self.targets[k] == index

    def keep(self, index: int, time: float) -> bool:
        key = index if self.by_index else time
        if key < self.next_target() - self._tol:
            return False
        # Skip every target this frame already covers (long frames in VFR, or a seek that
        # overshot), so the next call waits for the next future target.
        limit = key + self._tol
        if self.targets is not None:
            self._k = max(self._k + 1, int(np.searchsorted(self.targets, limit, side="right")))
        else:
            self._k = max(self._k + 1, math.floor(limit / self.step) + 1)
        return True

    def switch_to_time(self, last_time: float, interval: float) -> None:
        """Continue by timestamps after finding that frame indices do not track time."""
        if self.targets is not None:
            raise ValueError("only endless fps selectors can switch")
        self.by_index = False
        self._tol = TIME_TOLERANCE
        self.step = interval
        origin = last_time + interval
        self._k = max(0, math.ceil((origin - TIME_TOLERANCE) / interval)) if math.isfinite(origin) else 0
