import numpy as np
import pytest
from PIL import Image

from llamavid.testing import save_model_folder, tiny_model_and_processor


@pytest.fixture(scope="session")
def tiny():
    """(model, processor): a tiny random LLaMA-VID with mean compression, in eval mode."""
    return tiny_model_and_processor(seed=0)


@pytest.fixture(scope="session")
def tiny_folder(tiny, tmp_path_factory):
    """The `tiny` model saved as a llamavid model folder (what `llamavid convert` writes)."""
    model, processor = tiny
    folder = tmp_path_factory.mktemp("tiny-model")
    save_model_folder(model, processor, folder)
    return folder


@pytest.fixture(scope="session")
def image():
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def video():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
