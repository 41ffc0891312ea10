"""Shared fixtures for the server tests: a tiny saved model and generated media (no network, no downloads)."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from llamavid.testing import tiny_model_and_processor


def write_video(path, seconds: int = 4, fps: int = 8, size=(48, 64)):
    """A small h264 clip: a red bar growing from the left."""
    container = av.open(str(path), "w")
    stream = container.add_stream("h264", rate=fps)
    stream.height, stream.width = size
    stream.pix_fmt = "yuv420p"
    for index in range(seconds * fps):
        frame = np.zeros((*size, 3), np.uint8)
        frame[:, : (index * 3) % size[1]] = (200, 30, 30)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


@pytest.fixture(scope="module")
def served_files(tmp_path_factory):
    """A model folder and a media folder (the one the server allows) with an image and two videos."""
    root = tmp_path_factory.mktemp("serve")
    model, processor = tiny_model_and_processor(seed=3)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    media = root / "media"
    media.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(media / "green.png")
    write_video(media / "clip.mp4")
    write_video(media / "other.mp4", seconds=3, size=(32, 48))
    (root / "secret.txt").write_text("outside the allowed folder")
    return root


@pytest.fixture(scope="session")
def make_video():
    """`make_video(path, seconds=4, fps=8, size=(48, 64))` writes a small h264 clip."""
    return write_video
