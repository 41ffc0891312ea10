"""Helpers for tests, benchmarks and examples: tiny random models (from `llamavid.toy.tiny`, re-exported here
under their long-standing names), random checkpoints in the released layout at real widths
(`write_release_checkpoint`, from `llamavid.toy.release_layout`), real test videos and label-span reading. Nothing in the package imports this
module."""

from __future__ import annotations

from .toy.release_layout import ReleaseCheckpoint, write_release_checkpoint
from .toy.tiny import (
    tiny_config,
    tiny_image_processor,
    tiny_model_and_processor,
    tiny_qformer_tokenizer,
    tiny_tokenizer,
)


def write_test_video(
    path, seconds: float, fps: int = 10, size: tuple[int, int] = (48, 64), keyframe_every: int | None = None
):
    """A real h264 file: a red bar sweeping right over a background that brightens every second, so frames
    taken at different times differ. Returns `path`."""
    import av
    import numpy as np

    height, width = size
    options = {"g": str(keyframe_every)} if keyframe_every else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=fps, options=options)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for index in range(int(seconds * fps)):
            frame = np.full((height, width, 3), (index // fps * 25) % 200, np.uint8)
            x = (index * 3) % width
            frame[:, x : x + max(width // 8, 1)] = (220, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_movienet_movie(
    video_dir,
    files_dir,
    imdb: str,
    shots: list[tuple[int, int, list[int]]],
    runtime_minutes: int,
    jpgs: list[bytes],
    subtitles: str | None = None,
    shuffle_seed: int | str | None = None,
):
    """One movie as MovieNet ships it: `VIDEO_DIR/<imdb>.tar` with one jpg a keyframe
    (`<imdb>/shot_<shot>_img_<k>.jpg`), and in FILES_DIR `shot/<imdb>.txt` ("start end kf1 kf2 ..." a shot),
    `meta/<imdb>.json` (the runtime) and, when `subtitles` (srt text) is given, `subtitle/<imdb>.srt`.
    `jpgs` are the keyframes' encoded images in name order; `shuffle_seed` stores the members out of that order,
    so readers must sort them. Returns the archive's path."""
    import io
    import json
    import random
    import tarfile
    from pathlib import Path

    video_dir, files_dir = Path(video_dir), Path(files_dir)
    names = [f"{imdb}/shot_{s:04d}_img_{k}.jpg" for s, (_, _, keyframes) in enumerate(shots) for k in range(len(keyframes))]
    if len(jpgs) != len(names):
        raise ValueError(f"{len(names)} keyframes in the shots, {len(jpgs)} jpgs given")
    members = list(zip(names, jpgs, strict=True))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(members)
    video_dir.mkdir(parents=True, exist_ok=True)
    archive = video_dir / f"{imdb}.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    for folder in ("shot", "meta", "subtitle"):
        (files_dir / folder).mkdir(parents=True, exist_ok=True)
    lines = [" ".join(map(str, [start, end, *keyframes])) for start, end, keyframes in shots]
    (files_dir / "shot" / f"{imdb}.txt").write_text("\n".join(lines) + "\n")
    meta = {"imdb_id": imdb, "version": [{"runtime": f"{runtime_minutes} min", "description": ""}]}
    (files_dir / "meta" / f"{imdb}.json").write_text(json.dumps(meta))
    if subtitles is not None:
        (files_dir / "subtitle" / f"{imdb}.srt").write_text(subtitles, encoding="utf-8")
    return archive


def supervised_spans(labels: list[int], ignore_index: int = -100) -> list[tuple[int, int]]:
    """[start, end) runs of positions that carry a label (not `ignore_index`): what label-masking tests compare."""
    spans, start = [], None
    for position, label in enumerate([*labels, ignore_index]):
        if label != ignore_index and start is None:
            start = position
        if label == ignore_index and start is not None:
            spans.append((start, position))
            start = None
    return spans


__all__ = [
    "ReleaseCheckpoint",
    "supervised_spans",
    "tiny_config",
    "tiny_image_processor",
    "tiny_model_and_processor",
    "tiny_qformer_tokenizer",
    "tiny_tokenizer",
    "write_movienet_movie",
    "write_release_checkpoint",
    "write_test_video",
]
