"""Subtitles: SubRip (``.srt``) and WebVTT (``.vtt``) parsing, and alignment to frames.

LLaMA-VID's movie mode interleaves each sampled frame with the subtitle lines spoken
around it. Parsing here is tolerant where real subtitle files are messy:

* encodings: UTF-8 (with or without BOM), UTF-16 (BOM, or guessed from NUL bytes), else
  cp1252 and finally Latin-1, which never fails;
* NUL characters dropped, HTML-like tags (``<i>``, ``<font ...>``, VTT ``<c.x>``/``<v Bob>``)
  and ASS override blocks (``{\\an8}``) stripped, cue lines joined with spaces, blank
  cues skipped;
* cue numbers are optional, timestamps may use ``,`` or ``.`` and omit hours;
* ``remove_ellipsis=True`` deletes ``"..."`` as the original's MovieNet script did (off by
  default: it also glues words together, "wait...what" -> "waitwhat").
"""

from __future__ import annotations

import codecs
import html
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..atomic_files import write_text_atomically
from .errors import EmptyMediaError, MediaNotFoundError, UnsupportedMediaError

__all__ = [
    "Subtitle",
    "align_subtitles",
    "decode_text",
    "format_srt",
    "load_subtitles",
    "parse_srt",
    "parse_vtt",
    "write_srt",
]


class Subtitle(NamedTuple):
    """One cue: ``start`` and ``end`` in seconds, ``text`` on one line."""

    start: float
    end: float
    text: str


_TIME = r"(?:(\d+):)?(\d{1,2}):(\d{1,2})(?:[,.:](\d{1,3}))?"
_TIMING = re.compile(rf"^\s*{_TIME}\s*-->\s*{_TIME}")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")


def decode_text(data: bytes) -> str:
    """Bytes to text with the encoding guesses described in the module docstring."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if data.startswith(bom):
            return data[len(bom):].decode(encoding, errors="replace")
    sample = data[:4096]
    if len(sample) >= 4 and sample.count(0) > len(sample) // 4:  # BOM-less UTF-16
        even_nuls = sample[0::2].count(0)
        odd_nuls = sample[1::2].count(0)
        return data.decode("utf-16-be" if even_nuls > odd_nuls else "utf-16-le", errors="replace")
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _seconds(hours, minutes, seconds, millis) -> float:
    fraction = int(millis.ljust(3, "0")) / 1000.0 if millis else 0.0
    return int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds) + fraction


def _clean(line: str, remove_ellipsis: bool) -> str:
    line = html.unescape(_TAG.sub("", line.replace("\x00", "")))
    if remove_ellipsis:
        line = line.replace("...", "")
    return " ".join(line.split())


def _parse_cues(text: str, remove_ellipsis: bool) -> list[Subtitle]:
    """Shared by SRT and VTT: a timing line opens a cue; a blank line closes it."""
    subtitles: list[Subtitle] = []
    start = end = None
    lines: list[str] = []

    def close() -> None:
        if start is not None:
            joined = " ".join(part for part in lines if part)
            if joined:
                subtitles.append(Subtitle(start, end, joined))

    for raw in text.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        match = _TIMING.match(raw)
        if match:
            close()
            groups = match.groups()
            start, end, lines = _seconds(*groups[:4]), _seconds(*groups[4:]), []
        elif not raw.strip():
            close()
            start, lines = None, []
        elif start is not None:
            lines.append(_clean(raw, remove_ellipsis))
    close()
    return subtitles


def parse_srt(text: str, *, remove_ellipsis: bool = False) -> list[Subtitle]:
    """Parse SubRip text. Cue numbers are ignored; a cue's text is its lines joined by spaces."""
    return _parse_cues(text, remove_ellipsis)


def parse_vtt(text: str, *, remove_ellipsis: bool = False) -> list[Subtitle]:
    """Parse WebVTT text: header, ``NOTE``/``STYLE``/``REGION`` blocks and cue settings ignored."""
    # Blocks without a timing line (header, NOTE, STYLE, REGION, cue identifiers) never open a cue.
    return _parse_cues(text, remove_ellipsis)


def load_subtitles(path: str | os.PathLike, *, remove_ellipsis: bool = False) -> list[Subtitle]:
    """Read an ``.srt`` or ``.vtt`` file (the format is recognised by content, not name)."""
    p = Path(path)
    if not p.is_file():
        raise MediaNotFoundError(os.fspath(path), "no such subtitle file")
    data = p.read_bytes()
    if not data.strip():
        raise EmptyMediaError(os.fspath(path), "the subtitle file is empty")
    text = decode_text(data)
    subtitles = _parse_cues(text, remove_ellipsis)
    if not subtitles and not text.lstrip().startswith("WEBVTT"):
        raise UnsupportedMediaError(os.fspath(path), "no SubRip or WebVTT cues found")
    return subtitles


def align_subtitles(subtitles: list[Subtitle], frame_timestamps) -> list[list[str]]:
    """Attach each subtitle to one frame, as LLaMA-VID's movie mode does.

    A subtitle goes to the last frame shown before it **ends** (the last frame whose time is
    below the subtitle's end time). Like the original, a pointer over the frames only moves
    forward, so subtitles are taken in the given (file) order. Difference with the original
    (the original's bug): a subtitle ending at or before the first frame goes to the **first** frame,
    not the last one. Returns one list of texts per frame.
    """
    times = np.asarray(frame_timestamps, dtype=np.float64)
    per_frame: list[list[str]] = [[] for _ in range(len(times))]
    if not subtitles or len(times) == 0:
        return per_frame
    ends = np.fromiter((s.end for s in subtitles), dtype=np.float64, count=len(subtitles))
    # Number of frames strictly before each end; the running maximum is the forward-only pointer.
    pointer = np.maximum.accumulate(np.searchsorted(times, ends, side="left"))
    target = np.maximum(pointer - 1, 0)
    for frame, subtitle in zip(target.tolist(), subtitles, strict=True):
        per_frame[frame].append(subtitle.text)
    return per_frame


def _srt_time(seconds: float) -> str:
    millis = max(int(round(seconds * 1000)), 0)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def format_srt(subtitles: list[Subtitle]) -> str:
    """SubRip text that `parse_srt` reads back as the same cues (times to the millisecond, text on one line)."""
    blocks = [
        f"{number}\n{_srt_time(cue.start)} --> {_srt_time(cue.end)}\n{' '.join(cue.text.split())}\n"
        for number, cue in enumerate(subtitles, start=1)
    ]
    return "\n".join(blocks)


def write_srt(path: str | os.PathLike, subtitles: list[Subtitle]) -> None:
    """Write a ``.srt`` (UTF-8) under a temporary name, then rename: a killed run never leaves half a file."""
    write_text_atomically(path, format_srt(subtitles))
