"""A progress bar that appears only when decoding is slow enough to notice.

tqdm's ``delay`` keeps the bar hidden for the first second, so short clips print nothing;
``progress=None`` (the default everywhere) shows it only when stderr is a terminal, so
logs, pipes and test runs stay clean.
"""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["ProgressBar", "make_progress"]

DELAY_S = 1.0


class ProgressBar:
    """Minimal interface the decoders use; the silent instance does nothing."""

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units."""

    def close(self) -> None:
        """Remove the bar."""


class _TqdmBar(ProgressBar):
    def __init__(self, bar: Any):
        self._bar = bar

    def update(self, n: int = 1) -> None:
        self._bar.update(n)

    def close(self) -> None:
        self._bar.close()


def make_progress(progress: bool | None, total: float | None, desc: str, unit: str = "frame") -> ProgressBar:
    """A tqdm bar when ``progress`` is true, or ``None`` and stderr is a TTY; else silent."""
    if progress is False or (progress is None and not _stderr_is_tty()):
        return ProgressBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is a dependency, but a missing bar must never break loading
        return ProgressBar()
    total_int = int(total) if total and total > 0 else None
    return _TqdmBar(tqdm(total=total_int, desc=desc, unit=unit, delay=DELAY_S, leave=False, dynamic_ncols=True))


def _stderr_is_tty() -> bool:
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False
