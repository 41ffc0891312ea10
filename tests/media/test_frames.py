"""Folders of frame images and animated GIFs as clips."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from _make_media import index_frame, read_index
from PIL import Image

from llamavid.media import load_video, natural_key


def test_natural_sort():
    names = ["frame10.jpg", "frame2.jpg", "Frame1.jpg", "frame2b.jpg", "frame_100.jpg", "a.png"]
    assert sorted(names, key=natural_key) == ["a.png", "Frame1.jpg", "frame2.jpg", "frame2b.jpg", "frame10.jpg", "frame_100.jpg"]


@pytest.fixture
def frame_folder(tmp_path):
    for i in range(12):
        Image.fromarray(index_frame(i, 32, 24)).save(tmp_path / f"frame{i}.png")
    (tmp_path / "notes.txt").write_text("not a frame")
    return tmp_path


def test_frame_folder(frame_folder):
    clip = load_video(frame_folder)
    np.testing.assert_array_equal(read_index(clip.frames), np.arange(12))
    np.testing.assert_allclose(clip.timestamps, np.arange(12.0))
    assert clip.frames.shape == (12, 24, 32, 3) and clip.num_source_frames == 12
    clip = load_video(frame_folder, fps=1, folder_fps=4)
    np.testing.assert_array_equal(read_index(clip.frames), [0, 4, 8])
    clip = load_video(frame_folder, num_frames=3, size=12)
    np.testing.assert_array_equal(read_index(clip.frames), [0, 4, 8])
    assert clip.frames.shape == (3, 12, 16, 3)


def test_animated_gif_uses_frame_durations(tmp_path):
    durations = [500, 500, 250, 250, 250, 250, 1000, 1000]  # ms: starts 0, .5, 1, 1.25, ..., 2, 3
    frames = [Image.fromarray(index_frame(i, 32, 32)) for i in range(len(durations))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0, disposal=1)
    clip = load_video(path)
    np.testing.assert_array_equal(read_index(clip.frames), [0, 2, 6, 7])
    np.testing.assert_allclose(clip.timestamps, [0, 1, 2, 3])
    assert clip.codec == "gif" and clip.num_source_frames == 8 and clip.duration == pytest.approx(4.0)
    assert len(load_video(path, num_frames=2)) == 2


def test_real_animated_gif(skimage_data):
    clip = load_video(skimage_data / "no_time_for_that_tiny.gif", fps=10)
    assert len(clip) > 1 and clip.frames.dtype == np.uint8 and clip.frames.ndim == 4


def test_media_does_not_import_torch():
    # Import llamavid.media under an empty parent package, so only the media code is judged
    # (the package's own __init__ loads the model, which needs torch).
    code = (
        "import importlib.util, sys, types\n"
        "spec = importlib.util.find_spec('llamavid')\n"
        "package = types.ModuleType('llamavid')\n"
        "package.__path__ = list(spec.submodule_search_locations)\n"
        "sys.modules['llamavid'] = package\n"
        "import llamavid.media\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
