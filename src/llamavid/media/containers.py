"""Opening a media file with PyAV, for every reader of audio and video streams: one set of open options and one
wording for what FFmpeg reports (a missing file, a damaged container, a format it does not know)."""

from __future__ import annotations

from pathlib import Path

import av

from .errors import CorruptMediaError, MediaNotFoundError, UnsupportedMediaError

# First bytes of containers we can recognise, to tell "damaged video" from "not a video".
CONTAINER_MAGIC = (b"\x1a\x45\xdf\xa3", b"RIFF", b"FLV", b"OggS", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")

# Before PyAV 19, metadata that is not valid UTF-8 fails `av.open` unless told to ignore it; PyAV 19 removed that
# option (passing it is a TypeError, which failed every video there: found on the GPU machine's Python 3.12).
OPEN_OPTIONS = {"metadata_errors": "ignore"} if int(av.__version__.split(".")[0]) < 19 else {}


def open_container(path: Path, head: bytes) -> av.container.InputContainer:
    """`path` opened for reading; `head` (its first bytes) tells a damaged container from an unknown format."""
    try:
        return av.open(str(path), **OPEN_OPTIONS)
    except av.error.FileNotFoundError:
        raise MediaNotFoundError(str(path), "no such file") from None
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        if looks_like_container(head):
            raise CorruptMediaError(str(path), f"damaged or truncated video ({ffmpeg_reason(error)})") from None
        raise UnsupportedMediaError(str(path), "not a video or image format FFmpeg recognises") from None


def looks_like_container(head: bytes) -> bool:
    return head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") or head.startswith(CONTAINER_MAGIC)


def ffmpeg_reason(error: Exception) -> str:
    """FFmpeg's own words for an error, for the one-line messages of media errors."""
    return getattr(error, "strerror", None) or str(error)


__all__ = ["ffmpeg_reason", "looks_like_container", "open_container"]
