"""Vision features of whole videos, once, for movie chat and long-video training (`llamavid extract-features`).

Each video is decoded at the sampling rate (the model's `video_fps` by default, 1 for the releases) straight at the model's size, run through the
vision tower in batches, and written as one feature file (see `feature_files`) with its timestamps and, when a
`.srt`/`.vtt` sits beside it (or is given), the subtitle lines aligned to its frames.

Resumable by construction: finished files are skipped, files are written under a temporary name and renamed,
and leftovers of a killed run are removed. A video that cannot be read fails alone: the others are extracted,
the failures are reported at the end, and a rerun tries only what is not finished. Under `accelerate launch`
every process takes every N-th video.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..atomic_files import leftovers
from ..errors import LlamaVidError, ModelLoadError, UsageError
from .encoder import MediaEncoder
from .settings import Sampling

VIDEO_SUFFIXES = {
    ".mp4",
    ".mkv",
    ".avi",
    ".mov",
    ".webm",
    ".m4v",
    ".flv",
    ".mpg",
    ".mpeg",
    ".ts",
    ".wmv",
    ".gif",
}
SUBTITLE_SUFFIXES = (".srt", ".vtt")

logger = logging.getLogger(__name__)


def find_videos(source: Path) -> list[Path]:
    """A video file, or every video under a folder (recursively, in natural order)."""
    from ..media import MediaNotFoundError, natural_key

    if source.is_file():
        return [source]
    if not source.is_dir():
        raise MediaNotFoundError(str(source), "no such file or folder")
    videos = [p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
    return sorted(videos, key=lambda p: [natural_key(part) for part in p.relative_to(source).parts])


def subtitles_beside(video: Path) -> Path | None:
    for suffix in SUBTITLE_SUFFIXES:
        candidate = video.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def output_path(video: Path, source: Path, out_dir: Path) -> Path:
    relative = video.relative_to(source) if source.is_dir() else Path(video.name)
    return out_dir / relative.with_suffix(".safetensors")


def is_complete(path: Path) -> bool:
    from .feature_files import FeatureFileError, read_feature_file

    if not path.is_file():
        return False
    try:
        read_feature_file(path)
    except FeatureFileError:
        return False
    return True


def extract_video(
    encoder: MediaEncoder, video: Path, subtitles: Path | None, batch_size: int, progress: bool | None,
    sampling: Sampling | None = None,
):
    """FeatureFile of one video: frames as `sampling` says (default: the encoder's, the model's video_fps unless
    set), vision features in batches (bounded memory for pixels)."""
    frames = (sampling or encoder.sampling).settings("video", encoder.config)
    fps = frames["fps"]
    import torch
    from tqdm.auto import tqdm

    from ..media import align_subtitles, load_subtitles, load_video
    from ..model.processing import Video
    from .feature_files import FeatureFile

    clip = load_video(video, fps=fps, num_frames=frames["num_frames"], max_frames=frames["max_frames"],
                      size=frames["size"], progress=progress)
    features = []
    bar = tqdm(total=len(clip), desc=video.name, unit="frame", disable=_quiet(progress), leave=False)
    for start in range(0, len(clip), batch_size):
        pixels = encoder.processor.preprocess(Video(clip.frames[start : start + batch_size]))
        features.append(encoder.vision_features(pixels).to("cpu", torch.float16))
        bar.update(pixels.shape[0])
    bar.close()
    lines = (
        align_subtitles(load_subtitles(subtitles), clip.timestamps)
        if subtitles
        else [[] for _ in range(len(clip))]
    )
    metadata = {
        "source": video.name,
        "fps": fps,
        "vision_fingerprint": encoder.fingerprint,
        "vision_width": encoder.config.vision_config.hidden_size,
        "image_size": encoder.config.image_size,
        "subtitle_file": subtitles.name if subtitles else "",
    }
    return FeatureFile(torch.cat(features), [float(t) for t in clip.timestamps], lines, True, metadata)


def _quiet(progress: bool | None) -> bool | None:
    """tqdm's `disable`: None lets it hide itself when stderr is not a terminal."""
    return None if progress is None else not progress


def shard(items: list, index: int, count: int) -> list:
    return items[index::count]


def remove_leftovers(targets: Iterable[Path]) -> None:
    """Temporary files a killed run left for these outputs (features, transcripts): never complete, so never
    worth keeping. Only this process's own targets: under `accelerate launch` another process may be writing
    its files in the same folder."""
    for target in targets:
        for output in (target, target.with_suffix(".srt")):
            for leftover in leftovers(output):
                leftover.unlink(missing_ok=True)


def extract_each(
    items: list,
    target_of: Callable[[object], Path],
    name_of: Callable[[object], str],
    extract: Callable[[object, Path], object],
    desc: str,
    progress: bool | None = None,
) -> Iterator[tuple[Path, str, str | None]]:
    """The loop every extraction shares (videos, MovieNet movies): leftovers removed, finished outputs skipped,
    the others extracted (`extract(item, target)` -> FeatureFile) and written whole. Yields (output path,
    "done" | "skipped" | "failed", the one-line error of a failed item or None): a problem with one item (an
    undecodable video, a damaged archive) fails that item alone, and a rerun tries it again while skipping the
    finished ones; a problem with the run's settings (`ModelLoadError`, `UsageError`) stops the run."""
    from tqdm.auto import tqdm

    from .feature_files import write_feature_file

    remove_leftovers(target_of(item) for item in items)
    for item in tqdm(items, desc=desc, unit=desc.rstrip("s"), disable=_quiet(progress)):
        target = target_of(item)
        if is_complete(target):
            yield target, "skipped", None
            continue
        try:
            file = extract(item, target)
        except (ModelLoadError, UsageError):  # the run's settings (a transcription model that cannot load): stop
            raise
        except LlamaVidError as error:
            name, message = name_of(item), str(error)
            yield target, "failed", message if name in message else f"{name}: {message}"
            continue
        write_feature_file(target, file)
        yield target, "done", None


def extract_all(
    encoder: MediaEncoder,
    source: Path,
    out_dir: Path,
    subtitles: Path | None = None,
    sampling: Sampling | None = None,
    batch_size: int = 32,
    process_index: int = 0,
    num_processes: int = 1,
    progress: bool | None = None,
    transcriber=None,
) -> Iterator[tuple[Path, str, str | None]]:
    """Extract every video of `source` that this process owns; yields (output path, "done" | "skipped" |
    "failed", the error of a failed video or None), as `extract_each`.

    With a `transcriber` (see `transcribe.Transcriber`), a video without subtitles gets a transcript written
    beside its feature file (`<name>.srt`), aligned like any subtitle file.
    """
    videos = shard(find_videos(source), process_index, num_processes)
    if subtitles is not None and len(videos) > 1:
        raise UsageError(
            "--subtitles names one file: use it with a single video (or put .srt files beside each)"
        )

    def extract(video: Path, target: Path):
        subtitle_file = subtitles or subtitles_beside(video)
        if subtitle_file is None and transcriber is not None:
            subtitle_file = transcriber.subtitle_file(video, target.with_suffix(".srt"))
        return extract_video(encoder, video, subtitle_file, batch_size, progress, sampling)

    yield from extract_each(
        videos, lambda video: output_path(video, source, out_dir), str, extract, "videos", progress
    )
