"""Helpers for tests, benchmarks and examples: tiny random models (from `llamavid.toy.tiny`, re-exported here
under their long-standing names), real test videos and label-span reading. Nothing in the package imports this
module."""

from __future__ import annotations

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
    "supervised_spans",
    "tiny_config",
    "tiny_image_processor",
    "tiny_model_and_processor",
    "tiny_qformer_tokenizer",
    "tiny_tokenizer",
    "write_test_video",
]
