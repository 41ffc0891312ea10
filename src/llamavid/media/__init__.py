"""Media input for llamavid: images, videos, frame folders and subtitles.

Everything here returns plain numpy arrays or PIL images (no torch), and every failure a
user can cause raises a :class:`MediaError` subclass carrying the path and a one-line
reason. See :func:`load_image`, :func:`load_video`, :func:`load_subtitles` and
:func:`align_subtitles`.
"""

from .clip import VideoClip, resized_shape
from .errors import (
    CorruptMediaError,
    EmptyMediaError,
    MediaError,
    MediaNotFoundError,
    MediaTooLargeError,
    MediaWarning,
    NoVideoStreamError,
    UnsupportedMediaError,
)
from .frames import natural_key
from .images import base64_bytes, load_image, to_rgb
from .sampling import original_indices, uniform_indices
from .subtitles import Subtitle, align_subtitles, load_subtitles, parse_srt, parse_vtt
from .video import load_video

__all__ = [
    "CorruptMediaError",
    "EmptyMediaError",
    "MediaError",
    "MediaNotFoundError",
    "MediaTooLargeError",
    "MediaWarning",
    "NoVideoStreamError",
    "Subtitle",
    "UnsupportedMediaError",
    "VideoClip",
    "align_subtitles",
    "base64_bytes",
    "load_image",
    "load_subtitles",
    "load_video",
    "natural_key",
    "original_indices",
    "parse_srt",
    "parse_vtt",
    "resized_shape",
    "to_rgb",
    "uniform_indices",
]
