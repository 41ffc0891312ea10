"""Errors raised by media loading.

Every problem a user can cause by pointing llamavid at the wrong file ends in a
:class:`MediaError` subclass that carries the offending path and a short reason, so
the CLI can print ``str(error)`` as one line and exit non-zero instead of showing a
traceback. The subclasses exist so callers (a server, an evaluation loop) can tell
"skip this sample" apart from "this file needs a different tool".
"""

from __future__ import annotations

import os

from ..errors import LlamaVidError

__all__ = [
    "CorruptMediaError",
    "EmptyMediaError",
    "MediaError",
    "MediaNotFoundError",
    "MediaTooLargeError",
    "MediaWarning",
    "NoVideoStreamError",
    "UnsupportedMediaError",
]


class MediaError(LlamaVidError):
    """Base class: a media source could not be loaded.

    ``path`` is the file, folder or URL (``None`` for in-memory data) and ``reason`` a
    short lowercase phrase; ``str()`` joins them into one line.
    """

    def __init__(self, path: str | os.PathLike[str] | None, reason: str):
        self.path = None if path is None else os.fspath(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever FFmpeg said
        super().__init__(self.path, self.reason)

    def __str__(self) -> str:
        if self.path is None:
            return f"cannot load media: {self.reason}"
        return f"cannot load {self.path!r}: {self.reason}"


class MediaNotFoundError(MediaError, FileNotFoundError):
    """The path does not exist (also a ``FileNotFoundError`` for generic handlers)."""


class UnsupportedMediaError(MediaError):
    """Not a format we can read: not an image or video at all, or a codec without a decoder."""


class NoVideoStreamError(UnsupportedMediaError):
    """A readable container without a video stream (for example an audio-only file)."""


class CorruptMediaError(MediaError):
    """Recognised as media but damaged: truncated, missing its index, or undecodable."""


class EmptyMediaError(MediaError):
    """A zero-byte file, a folder without images, or a video that yields no frames."""


class MediaTooLargeError(MediaError):
    """Dimensions beyond what we agree to decode (guards against decompression bombs)."""


class MediaWarning(UserWarning):
    """Media loaded only in part (for example a truncated video); the message says what was kept."""
