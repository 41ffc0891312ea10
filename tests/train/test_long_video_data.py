"""Training samples from the original's long-video `.pkl` files: read by the one safe reader, never by a bare
unpickler (a `.pkl` in a downloaded training set must not run code)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from llamavid.testing import tiny_model_and_processor
from llamavid.train.data import DataError, DataSettings, SupervisedDataset

QUESTION = [{"from": "human", "value": "<image>\nWho leaves?"}, {"from": "gpt", "value": "Nobody."}]


def _dataset(tmp_path, name: str, model, processor) -> SupervisedDataset:
    data = tmp_path / f"{name}.json"
    data.write_text(json.dumps([{"id": name, "video": f"{name}.pkl", "conversations": QUESTION}]))
    settings = DataSettings(data_path=str(data), feature_folder=str(tmp_path), on_error="fail")
    return SupervisedDataset(settings, processor)


def test_a_movie_pkl_becomes_features_without_cls_and_its_frames_tokens(tmp_path):
    model, processor = tiny_model_and_processor(seed=0)
    config = model.config
    feats = np.random.default_rng(0).standard_normal((3, 1 + config.num_patches, 32)).astype(np.float16)
    (tmp_path / "movie.pkl").write_bytes(pickle.dumps({"feats": feats, "inputs": "<image>Hi...<image><image>Bye"}))
    sample = _dataset(tmp_path, "movie", model, processor).load(0)
    np.testing.assert_array_equal(sample["vision_features"].numpy(), feats[:, 1:])
    assert sample["input_ids"].count(config.image_token_id) == 3 * config.tokens_per_frame
    assert sample["per_segment"] == 3 * config.tokens_per_frame


class _Trap:
    """Unpickling this calls `open(path, "w")`: a file appears if the reader runs what the pickle says."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pkl_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    model, processor = tiny_model_and_processor(seed=0)
    marker = tmp_path / "the-pickle-ran-code"
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"feats": _Trap(marker), "inputs": "<image>"}))
    dataset = _dataset(tmp_path, "evil", model, processor)
    with pytest.raises(DataError, match="refusing to load io.open"):
        dataset[0]
    assert not marker.exists()
