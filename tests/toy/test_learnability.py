"""The proof that training learns: stage 0, 1 and 2 of recipes/tiny-synthetic.yaml, at the recipe's step counts,
on a fresh synthetic set, held-out exact match. Slow (runs in CI); its CPU time is `benchmarks/learn_synthetic.py`'s
business."""

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))


@pytest.mark.training
def test_tiny_llamavid_learns_synthetic_video_qa(tmp_path):
    from learn_synthetic import learn
    from llamavid.toy.synthetic import SyntheticSettings, generate

    torch.set_num_threads(1)
    generate(tmp_path / "data", SyntheticSettings(seed=0))
    figures = learn(tmp_path / "data", tmp_path / "run", seed=0)  # the recipe's steps
    print(json.dumps(figures))
    assert figures["steps"] == 50 + 800, "the recipe's stage 1 and stage 2 steps"
    assert figures["accuracy"] > figures["majority_baseline"] + 0.2, "stalled near the majority answer"
    assert figures["accuracy"] >= 0.70
    assert figures["colour_accuracy"] >= 0.90
    assert figures["shape_accuracy"] >= 0.85
    assert figures["temporal_accuracy"] >= 0.90
