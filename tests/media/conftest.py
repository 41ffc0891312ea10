"""Session-wide cache of generated test media (each file is encoded once per test run)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # for _make_media

from _make_media import has_encoder, make_video  # noqa: E402


class MediaCache:
    def __init__(self, root: Path):
        self.root = root

    def video(self, name: str, **kwargs) -> Path:
        """Encode ``name`` with :func:`make_video` once; skip when the encoder is missing."""
        path = self.root / name
        if not path.exists():
            codec = kwargs.get("codec", "libx264")
            if not has_encoder(codec):
                pytest.skip(f"encoder {codec} not available in this PyAV build")
            tmp = path.with_name("tmp-" + name)
            make_video(tmp, **kwargs)
            tmp.rename(path)
        return path

    def path(self, name: str) -> Path:
        return self.root / name


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> MediaCache:
    return MediaCache(tmp_path_factory.mktemp("media"))


@pytest.fixture(scope="session")
def cfr_h264(media) -> Path:
    """10 s, 25 fps, 32x32 h264, a keyframe every 2 s, B-frames on."""
    return media.video("cfr_h264.mp4", fps=25, num_frames=250, gop=50)


@pytest.fixture(scope="session")
def skimage_data() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-image (sample photos) not installed")
    return Path(spec.origin).parent / "data"
