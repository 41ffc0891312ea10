"""The demo's recipe (recipes/demo-smollm2.yaml) trained from scratch for a few steps (stage 1's 30, the direction
stage's 1 and 75 mixed ones, about ten CPU minutes) learns: held-out >= 50 % overall, >= 80 % on the order
questions. The shipped weights come from the same recipe at its full length. Slow (runs in CI)."""

import json
from pathlib import Path

import pytest
import torch

STAGE2_STEPS = 75  # batch 16


@pytest.mark.training
def test_demo_recipe_learns_within_ten_minutes(tmp_path):
    pytest.importorskip("peft")
    from llamavid.toy.smollm2 import SmolLM2NotInstalled, gguf_path
    from llamavid.toy.synthetic import SyntheticSettings, generate
    from llamavid.train.recipe import load_recipe
    from llamavid.train.run import run_recipe

    try:
        gguf_path()
    except SmolLM2NotInstalled as error:
        pytest.skip(str(error))
    torch.set_num_threads(1)
    data = tmp_path / "data"
    generate(data, SyntheticSettings(seed=5, num_videos=600, heldout_videos=48))
    # The direction curriculum's first stage gets one step: its plateau takes hundreds (the full-length recipe).
    overrides = [f"output_dir={tmp_path / 'run'}", f"prepare.stage0.data_dir={data}",
                 "stages.stage2_direction.training.max_steps=1", f"stages.stage2.training.max_steps={STAGE2_STEPS}",
                 "stages.stage2_direction.training.save_strategy='no'", "stages.stage2.training.save_strategy='no'",
                 f"evaluate.records={data / 'heldout.json'}", f"evaluate.video_folder={data / 'videos'}",
                 "evaluate.batch_size=16"]
    stages = ("stage1", "stage2_direction", "stage2")
    for stage in stages:
        overrides += [f"stages.{stage}.data.data_path={data / 'train.json'}",
                      f"stages.{stage}.data.video_folder={data / 'videos'}"]
    recipe = Path(__file__).parents[2] / "recipes" / "demo-smollm2.yaml"
    figures = run_recipe(load_recipe(recipe, overrides))
    evaluation = figures["evaluation"]
    print(json.dumps(evaluation))
    assert [figures[stage]["steps"] for stage in stages] == [30, 1, STAGE2_STEPS]
    assert evaluation["accuracy"] >= 0.50
    assert evaluation["order_accuracy"] >= 0.80
