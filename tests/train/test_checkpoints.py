"""Checkpoints that a killed or disk-full save left torn are set aside, and training resumes from the newest whole
one; new checkpoints appear whole (written under `.staging/`, then renamed)."""

import copy
import json
import shutil

import pytest
import torch
from safetensors.torch import save_file

from llamavid.train.checkpoints import checkpoint_problem, resumable_checkpoint, set_aside_incomplete
from llamavid.train.recipe import recipe_from_dict
from llamavid.train.run import run_recipe


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from llamavid.toy.synthetic import SyntheticSettings, generate

    out = tmp_path_factory.mktemp("toy-synthetic")
    generate(out, SyntheticSettings(num_videos=16, heldout_videos=2, seed=3))
    return out


def stage1_recipe(data, out, **training) -> dict:
    from llamavid.toy.recipes import two_stage_recipe

    raw = two_stage_recipe(data, out, None, save_strategy="steps", save_steps=2, **training)
    raw["stages"] = [s for s in raw["stages"] if s["name"] == "stage1"]
    return raw


def whole_checkpoint(folder, step=2, weights="model.safetensors"):
    folder.mkdir(parents=True)
    save_file({"a": torch.zeros(4, 4), "b": torch.ones(3)}, str(folder / weights))
    torch.save({"lr": 1.0}, folder / "optimizer.pt")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def cut(path, keep=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_checkpoint_problem_names_each_torn_state(tmp_path):
    assert checkpoint_problem(whole_checkpoint(tmp_path / "whole")) is None
    no_state = whole_checkpoint(tmp_path / "sigterm")
    (no_state / "trainer_state.json").unlink()
    assert checkpoint_problem(no_state) == "no trainer_state.json"
    damaged = whole_checkpoint(tmp_path / "damaged-state")
    cut(damaged / "trainer_state.json")
    assert checkpoint_problem(damaged) == "trainer_state.json is damaged"
    short = whole_checkpoint(tmp_path / "disk-full")
    cut(short / "model.safetensors", 0.9)
    assert checkpoint_problem(short) == "model.safetensors is cut short"
    optimizer = whole_checkpoint(tmp_path / "optimizer")
    cut(optimizer / "optimizer.pt")
    assert checkpoint_problem(optimizer) == "optimizer.pt is cut short"
    no_weights = whole_checkpoint(tmp_path / "no-weights")
    (no_weights / "model.safetensors").unlink()
    assert checkpoint_problem(no_weights) == "no weights"
    sharded = whole_checkpoint(tmp_path / "sharded", weights="model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (sharded / "model.safetensors.index.json").write_text(json.dumps(index))
    assert checkpoint_problem(sharded) == "model-00002-of-00002.safetensors (listed in model.safetensors.index.json) is missing"
    adapter = whole_checkpoint(tmp_path / "adapter", weights="visual_adapter.safetensors")
    assert checkpoint_problem(adapter) is None


def test_torn_folders_of_any_version_are_renamed_never_deleted(tmp_path, caplog):
    run = tmp_path / "stage2"
    whole_checkpoint(run / "checkpoint-2")
    (whole_checkpoint(run / "checkpoint-4") / "trainer_state.json").unlink()
    whole_checkpoint(run / "tmp-checkpoint-6", step=6)  # transformers 4.36-4.38's staging name
    whole_checkpoint(run / ".staging" / "checkpoint-8", step=8)  # ours, killed before the rename
    (run / "incomplete-checkpoint-4").mkdir()  # set aside by an earlier rerun
    with caplog.at_level("WARNING"):
        assert resumable_checkpoint(run) == run / "checkpoint-2"
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint-2", "incomplete-checkpoint-4", "incomplete-checkpoint-4.2", "incomplete-checkpoint-6",
        "incomplete-checkpoint-8",
    ]
    assert (run / "incomplete-checkpoint-4.2" / "model.safetensors").is_file()  # the work is kept
    assert "checkpoint-4 is incomplete (no trainer_state.json): set aside as incomplete-checkpoint-4.2" in caplog.text
    assert set_aside_incomplete(run) == []  # nothing left to do on the next rerun


def test_training_resumes_from_the_checkpoint_before_a_torn_one(toy_data, tmp_path):
    raw = stage1_recipe(toy_data, tmp_path / "whole", max_steps=6, save_total_limit=2)
    whole = run_recipe(recipe_from_dict(raw))["stage1"]["losses"]
    whole_dir = tmp_path / "whole" / "stage1"
    # rotation still works on the real folder, and nothing staged is left behind
    assert sorted(p.name for p in whole_dir.glob("checkpoint-*")) == ["checkpoint-4", "checkpoint-6"]
    assert not (whole_dir / ".staging").exists()

    broken = copy.deepcopy(raw)
    broken["output_dir"] = str(tmp_path / "broken")
    broken["stages"][0]["training"]["max_steps"] = 2
    run_recipe(recipe_from_dict(broken))
    stage_dir = tmp_path / "broken" / "stage1"
    # what a SIGTERM during the save of step 4 leaves (weights, no state) and a full disk at step 6 (weights cut short)
    shutil.copytree(stage_dir / "checkpoint-2", stage_dir / "checkpoint-4")
    (stage_dir / "checkpoint-4" / "trainer_state.json").unlink()
    shutil.copytree(stage_dir / "checkpoint-4", stage_dir / "checkpoint-6")
    cut(stage_dir / "checkpoint-6" / "visual_adapter.safetensors")
    broken["stages"][0]["training"]["max_steps"] = 6
    resumed = run_recipe(recipe_from_dict(broken))["stage1"]
    assert resumed["steps"] == 6
    assert resumed["losses"] == pytest.approx(whole, rel=1e-5)  # continued from checkpoint-2, not from scratch
    assert (stage_dir / "incomplete-checkpoint-4" / "visual_adapter.safetensors").is_file()
    assert (stage_dir / "incomplete-checkpoint-6").is_dir()
    assert checkpoint_problem(stage_dir / "checkpoint-4") is None  # the rerun's own step 4, whole


def test_a_save_killed_midway_leaves_no_checkpoint_folder(toy_data, tmp_path, monkeypatch):
    from llamavid.train.trainer import LlamaVidTrainer

    def killed(self, output_dir):  # the process dies after the weights and optimizer, before the state
        raise KeyboardInterrupt

    monkeypatch.setattr(LlamaVidTrainer, "_save_rng_state", killed)
    raw = stage1_recipe(toy_data, tmp_path / "run", max_steps=2)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe_from_dict(raw))
    stage_dir = tmp_path / "run" / "stage1"
    assert not (stage_dir / "checkpoint-2").exists()  # a resume cannot pick it
    assert (stage_dir / ".staging" / "checkpoint-2" / "visual_adapter.safetensors").is_file()
    assert resumable_checkpoint(stage_dir) is None  # start again, with the staged files kept aside
    assert (stage_dir / "incomplete-checkpoint-2" / "visual_adapter.safetensors").is_file()


KILLED_RUN = """
import json, os, signal, sys
from llamavid.train.recipe import recipe_from_dict
from llamavid.train.run import run_recipe
from llamavid.train.trainer import LlamaVidTrainer

original = LlamaVidTrainer._save_rng_state

def save_then_die(self, output_dir):
    if self.state.global_step == 4:  # the weights and optimizer of step 4 are written, its state is not
        os.kill(os.getpid(), signal.SIGKILL)
    original(self, output_dir)

LlamaVidTrainer._save_rng_state = save_then_die
run_recipe(recipe_from_dict(json.loads(sys.argv[1])))
"""


def test_a_process_killed_while_saving_resumes_from_the_last_whole_checkpoint(toy_data, tmp_path):
    """SIGKILL in the middle of a save (no Python cleanup runs): the rerun trains on from checkpoint-2."""
    import subprocess
    import sys

    raw = stage1_recipe(toy_data, tmp_path / "run", max_steps=6)
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(raw)], capture_output=True, timeout=600)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    stage_dir = tmp_path / "run" / "stage1"
    assert sorted(p.name for p in stage_dir.glob("checkpoint-*")) == ["checkpoint-2"]
    assert (stage_dir / ".staging" / "checkpoint-4" / "optimizer.pt").is_file()
    resumed = run_recipe(recipe_from_dict(raw))["stage1"]
    assert resumed["steps"] == 6 and len(resumed["losses"]) == 6
    assert (stage_dir / "incomplete-checkpoint-4" / "optimizer.pt").is_file()
    assert [p.name for p in stage_dir.glob("checkpoint-*")] == ["checkpoint-6"]  # the recipes keep one
