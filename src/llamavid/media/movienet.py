"""MovieNet movies as LLaMA-VID's long-video data saw them: keyframe archives, shot files and meta files.

A movie `<imdb>` is a keyframe archive `<imdb>.tar` (jpg members; the frames are the jpgs in member-name order)
and, in a files folder, `shot/<imdb>.txt` (one line per shot, "start end kf1 kf2 ...": the keyframes' frame
indices are the columns from the third on, and the second column of the last line is the movie's frame count),
`meta/<imdb>.json` (`version[0].runtime`, "130 min") and, optionally, `subtitle/<imdb>.srt`. A keyframe's time
is its index over the movie's frame rate, frame count / (runtime minutes x 60), as in the original.

Archives are read in two passes so that a 3-hour movie never sits in memory: an index pass over the tar headers
(names, offsets and sizes only; the tar's physical order need not be name order), then each jpg is read by
seeking to its offset, in name order, a batch at a time. That needs an uncompressed tar, which is what MovieNet
ships; a compressed one is refused with a one-line error rather than decompressed again for every seek.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import CorruptMediaError, MediaError, MediaNotFoundError
from .images import load_image

__all__ = [
    "Keyframe",
    "MovieNetMovie",
    "find_movienet_movies",
    "iter_keyframe_batches",
    "keyframe_index",
    "keyframe_times",
    "read_runtime_minutes",
    "read_shots",
]


@dataclass(frozen=True)
class Keyframe:
    """Where one jpg lies in its archive."""

    name: str
    offset: int
    size: int


@dataclass(frozen=True)
class MovieNetMovie:
    """The files of one MovieNet movie; `subtitles` is None when the movie has no subtitle file."""

    imdb: str
    archive: Path
    shots: Path
    meta: Path
    subtitles: Path | None


def find_movienet_movies(video_dir: str | os.PathLike, files_dir: str | os.PathLike) -> list[MovieNetMovie]:
    """Every `<imdb>.tar` of `video_dir` (sorted by name) with the paths of its files under `files_dir`.

    Missing shot or meta files are not checked here: they fail that movie alone when it is extracted."""
    video_dir, files_dir = Path(video_dir), Path(files_dir)
    if not video_dir.is_dir():
        raise MediaNotFoundError(str(video_dir), "no such folder of MovieNet keyframe archives")
    if not files_dir.is_dir():
        raise MediaNotFoundError(str(files_dir), "no such MovieNet files folder (with shot/, meta/, subtitle/)")
    movies = []
    for archive in sorted(p for p in video_dir.glob("*.tar") if p.is_file()):
        imdb = archive.stem
        subtitles = files_dir / "subtitle" / f"{imdb}.srt"
        movies.append(
            MovieNetMovie(
                imdb,
                archive,
                files_dir / "shot" / f"{imdb}.txt",
                files_dir / "meta" / f"{imdb}.json",
                subtitles if subtitles.is_file() else None,
            )
        )
    return movies


def read_shots(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(keyframe frame indices in file order, the movie's frame count) from a shot file."""
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(str(path), "no such MovieNet shot file")
    indices: list[int] = []
    total = None
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        columns = line.split()
        if not columns:
            continue
        try:
            values = [int(column) for column in columns]
        except ValueError:
            raise CorruptMediaError(str(path), f"line {number} is not integers: {line.strip()[:60]!r}") from None
        if len(values) < 2:
            raise CorruptMediaError(str(path), f"line {number} has no 'start end' columns")
        indices += values[2:]
        total = values[1]
    if total is None or not indices:
        raise CorruptMediaError(str(path), "the shot file lists no keyframes")
    if total <= 0:
        raise CorruptMediaError(str(path), f"the movie's frame count (last line, second column) is {total}")
    keyframes = np.asarray(indices, dtype=np.int64)
    # subtitle placement walks the keyframes forward in time: out-of-order indices would misplace every line
    backwards = np.flatnonzero(np.diff(keyframes) < 0)
    if backwards.size:
        at = int(backwards[0]) + 1
        raise CorruptMediaError(
            str(path), f"keyframe {at} (frame {keyframes[at]}) comes before keyframe {at - 1} (frame {keyframes[at - 1]})"
        )
    return keyframes, total


def read_runtime_minutes(path: str | os.PathLike) -> int:
    """The first integer of `version[0].runtime` in a MovieNet meta file ("130 min" -> 130)."""
    path = Path(path)
    if not path.is_file():
        raise MediaNotFoundError(str(path), "no such MovieNet meta file")
    try:
        runtime = json.loads(path.read_text(encoding="utf-8"))["version"][0]["runtime"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise CorruptMediaError(str(path), "no version[0].runtime in the meta file") from None
    match = re.search(r"\d+", str(runtime))
    if not match or int(match.group()) <= 0:
        raise CorruptMediaError(str(path), f"runtime {runtime!r} has no positive number of minutes")
    return int(match.group())


def keyframe_times(indices: np.ndarray, total_frames: int, runtime_minutes: int) -> np.ndarray:
    """Seconds of each keyframe: index / fps with fps = frame count / runtime in seconds, as the original."""
    fps = total_frames / (runtime_minutes * 60)
    return np.asarray(indices, dtype=np.float64) / fps


def keyframe_index(archive: str | os.PathLike) -> list[Keyframe]:
    """The archive's jpg members in name order, from its headers alone (no image data is read)."""
    archive = Path(archive)
    if not archive.is_file():
        raise MediaNotFoundError(str(archive), "no such keyframe archive")
    try:
        with tarfile.open(archive, "r:") as tar:
            members = [
                Keyframe(m.name, m.offset_data, m.size)
                for m in tar
                if m.isfile() and m.name.lower().endswith(".jpg")
            ]
    except tarfile.ReadError as error:
        raise CorruptMediaError(str(archive), f"not an uncompressed tar archive ({error})") from None
    if not members:
        raise CorruptMediaError(str(archive), "the archive holds no .jpg keyframes")
    return sorted(members, key=lambda k: k.name)


def iter_keyframe_batches(
    archive: str | os.PathLike, keyframes: list[Keyframe], batch_size: int
) -> Iterator[list[Image.Image]]:
    """RGB images of `keyframes`, `batch_size` at a time, each read at its offset (one batch in memory)."""
    with open(archive, "rb") as handle:
        for start in range(0, len(keyframes), batch_size):
            images = []
            for keyframe in keyframes[start : start + batch_size]:
                handle.seek(keyframe.offset)
                data = handle.read(keyframe.size)
                try:
                    if len(data) != keyframe.size:
                        raise CorruptMediaError(None, "the archive ends inside this member")
                    image = load_image(data)
                except (MediaError, OSError) as error:
                    reason = getattr(error, "reason", str(error))
                    raise CorruptMediaError(f"{archive}:{keyframe.name}", reason) from None
                images.append(image)
            yield images

