"""Vision features of MovieNet movies (`llamavid extract-features VIDEO_DIR --movienet-files FILES_DIR`).

The original's `extract_movienet_features.py` as a feature-file writer: every keyframe of a movie's archive, in
member-name order, through the model's image processor (no padding to a square, as the original's CLIP
processor) and vision tower `batch_size` at a time; timestamps from the shot and meta files; the movie's `.srt`
aligned to the keyframes by the one rule of `align_subtitles` (shared with videos). The output is the same
feature file as for videos, `OUT/<imdb>.safetensors`, so movie chat and long-video training read it unchanged.

Differences with the original: a movie without a subtitle file, or with an empty one, is extracted without
subtitles (with a warning) instead of skipped; `script/` files are not needed; a shot file that does not match
its archive is an error for that movie instead of features paired with the wrong times. Such errors, and damaged
jpgs, fail that movie alone: the others are still extracted and the failures are reported at the end.

Resumability, failures and sharding are those of `extract` (one loop, `extract_each`): finished files are
skipped, files appear only when complete, and under `accelerate launch` each process takes every N-th movie.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from .encoder import MediaEncoder
from .extract import _quiet, extract_each, shard

logger = logging.getLogger(__name__)


def extract_movienet_movie(encoder: MediaEncoder, movie, batch_size: int, progress: bool | None):
    """FeatureFile of one MovieNet movie; only one batch of decoded keyframes is held at a time."""
    import torch
    from tqdm.auto import tqdm

    from ..media import CorruptMediaError, EmptyMediaError, align_subtitles, load_subtitles
    from ..media.movienet import (
        iter_keyframe_batches,
        keyframe_index,
        keyframe_times,
        read_runtime_minutes,
        read_shots,
    )
    from ..model.processing import Video
    from .feature_files import FeatureFile

    indices, total_frames = read_shots(movie.shots)
    minutes = read_runtime_minutes(movie.meta)
    keyframes = keyframe_index(movie.archive)
    if len(keyframes) != len(indices):
        missing = min(len(keyframes), len(indices))
        detail = (
            f"keyframe {missing} (frame {indices[missing]}) has no jpg"
            if len(indices) > len(keyframes)
            else f"jpg {keyframes[missing].name!r} has no keyframe in the shot file"
        )
        raise CorruptMediaError(
            str(movie.archive),
            f"the shot file {movie.shots.name} lists {len(indices)} keyframes but the archive holds "
            f"{len(keyframes)} jpgs: {detail}",
        )
    times = keyframe_times(indices, total_frames, minutes)
    subtitles = None
    if movie.subtitles is None:
        logger.warning("%s: no subtitle file, extracted without subtitles", movie.imdb)
    else:
        try:
            subtitles = load_subtitles(movie.subtitles, remove_ellipsis=True)
        except EmptyMediaError:  # a few MovieNet subtitle files are empty: the same as none
            logger.warning("%s: the subtitle file is empty, extracted without subtitles", movie.imdb)

    config = encoder.config
    # features only (a few hundred KB a keyframe), filled in place: no second copy from concatenating batches
    features = torch.empty(len(keyframes), 1 + config.num_patches, config.vision_config.hidden_size, dtype=torch.float16)
    bar = tqdm(total=len(keyframes), desc=movie.imdb, unit="keyframe", disable=_quiet(progress), leave=False)
    start = 0
    for images in iter_keyframe_batches(movie.archive, keyframes, batch_size):
        pixels = encoder.processor.preprocess(Video(images))
        features[start : start + len(images)] = encoder.vision_features(pixels).to("cpu", torch.float16)
        start += len(images)
        bar.update(len(images))
    bar.close()
    lines = align_subtitles(subtitles, times) if subtitles else [[] for _ in range(len(keyframes))]
    metadata = {
        "source": movie.archive.name,
        "fps": total_frames / (minutes * 60),
        "origin": "movienet",
        "movienet_total_frames": total_frames,
        "movienet_runtime_minutes": minutes,
        "vision_fingerprint": encoder.fingerprint,
        "vision_width": config.vision_config.hidden_size,
        "image_size": config.image_size,
        "subtitle_file": movie.subtitles.name if movie.subtitles else "",
    }
    return FeatureFile(features, times.tolist(), lines, True, metadata)


def extract_movienet(
    encoder: MediaEncoder,
    video_dir: Path,
    files_dir: Path,
    out_dir: Path,
    batch_size: int = 32,
    process_index: int = 0,
    num_processes: int = 1,
    progress: bool | None = None,
) -> Iterator[tuple[Path, str, str | None]]:
    """Extract every movie of `video_dir` this process owns; yields (output path, "done" | "skipped" | "failed",
    the one-line error of a failed movie or None). A user-fixable problem with one movie does not stop the rest."""
    from ..media.movienet import find_movienet_movies

    movies = shard(find_movienet_movies(video_dir, files_dir), process_index, num_processes)
    yield from extract_each(
        movies,
        lambda movie: out_dir / f"{movie.imdb}.safetensors",
        lambda movie: movie.imdb,
        lambda movie, target: extract_movienet_movie(encoder, movie, batch_size, progress),
        "movies",
        progress,
    )
