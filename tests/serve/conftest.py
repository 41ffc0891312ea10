"""Shared fixtures for the server tests: a tiny saved model and generated media (no network, no downloads)."""

from __future__ import annotations

import pytest
from PIL import Image

from llamavid.testing import save_model_folder, tiny_model_and_processor, write_test_video


@pytest.fixture(scope="module")
def served_files(tmp_path_factory):
    """A model folder and a media folder (the one the server allows) with an image and two videos."""
    root = tmp_path_factory.mktemp("serve")
    model, processor = tiny_model_and_processor(seed=3)
    save_model_folder(model, processor, root / "model")
    media = root / "media"
    media.mkdir()
    Image.new("RGB", (40, 30), (10, 200, 10)).save(media / "green.png")
    write_test_video(media / "clip.mp4", seconds=4)
    write_test_video(media / "other.mp4", seconds=3, size=(32, 48))
    (root / "secret.txt").write_text("outside the allowed folder")
    return root


@pytest.fixture(scope="session")
def make_video():
    """`make_video(path)` writes a 4-second h264 clip."""
    return lambda path: write_test_video(path, seconds=4)
