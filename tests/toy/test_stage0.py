"""Stage 0 for tiny models: the vision tower's dense pretraining, the Q-Former's grounding, and the decoded
frames handed to the training stages."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from llamavid.toy.grounding import (
    GROUNDING_PREFIXES,
    GroundingData,
    grounding_pairs,
    referring_prompts,
    unnamed_prompts,
)
from llamavid.toy.synthetic import COLOURS, SHAPES
from llamavid.train.recipe import recipe_from_dict
from llamavid.train.run import run_recipe


def _class(colour: str, shape: str) -> int:
    return 1 + list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)


def test_grounding_pairs_name_visible_objects_and_wholly_absent_ones():
    red_circle, blue_square = _class("red", "circle"), _class("blue", "square")
    labels = torch.tensor([[0, red_circle, red_circle, blue_square], [0, 0, 0, 0]])
    present, absent = grounding_pairs(labels)
    assert sorted(map(tuple, present.tolist())) == [(0, red_circle), (0, blue_square)]
    absent_in_first = {c for f, c in absent.tolist() if f == 0}
    # neither red nor blue, neither circle nor square: green/yellow triangles only
    assert absent_in_first == {_class("green", "triangle"), _class("yellow", "triangle")}
    assert len([1 for f, _ in absent.tolist() if f == 1]) == len(COLOURS) * len(SHAPES)


def test_referring_prompts_name_the_object_never_the_answer():
    prompts = referring_prompts()
    assert set(prompts) == set(range(1, 1 + len(COLOURS) * len(SHAPES)))
    for text in prompts[_class("green", "square")]:
        assert "green" in text or "square" in text
        assert not any(c in text for c in COLOURS if c != "green")


def test_prompts_naming_no_object_target_every_object_of_a_frame(tmp_path):
    from transformers import BertTokenizerFast

    red_circle, blue_square = _class("red", "circle"), _class("blue", "square")
    labels = torch.tensor([[0, red_circle, 0, blue_square], [0, 0, 0, 0], [red_circle, 0, 0, 0]])
    words = sorted({w.strip("?.:,") for t in unnamed_prompts() for w in t.lower().split()})
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "?", ".", *words]))
    tokenizer = BertTokenizerFast(vocab=str(tmp_path / "vocab.txt"))
    data = GroundingData(torch.zeros(3, 5, 4), labels, tokenizer, 32, unnamed_share=0.5)
    unnamed = (data.pairs[:, 1] == 0).nonzero().squeeze(1)
    assert sorted(data.pairs[unnamed, 0].tolist()) == [0, 2], "every frame showing an object (the empty one has none)"
    _, input_ids, _, target = data.batch(unnamed, random.Random(0))
    for frame, row in zip(data.pairs[unnamed, 0].tolist(), target.tolist(), strict=True):
        assert row == (labels[frame] != 0).tolist()
    texts = tokenizer.batch_decode(input_ids, skip_special_tokens=True)
    assert all("first" in t and not set(t.split()) & {*COLOURS, *SHAPES} for t in texts), texts
    named = (data.is_present).nonzero().squeeze(1)
    _, _, _, target = data.batch(named, random.Random(0))
    for (frame, cls), row in zip(data.pairs[named].tolist(), target.tolist(), strict=True):
        assert row == (labels[frame] == cls).tolist(), "a referring prompt still targets its one object"


def _recipe(data, out):
    return recipe_from_dict({
        "name": "stage0-toy",
        "seed": 0,
        "output_dir": str(out),
        "model": {"source": "tiny", "settings": {"vocab_size": 600, "image_size": 32, "patch_size": 8, "vision_width": 32,
                           "qformer_width": 32, "text_width": 32, "vision_layers": 1, "text_layers": 1}},
        "prepare": {"stage0": {"data_dir": str(data), "steps": 40, "batch_size": 16, "warmup_steps": 4,
                               "grounding_steps": 60, "grounding_batch_size": 32, "grounding_warmup_steps": 4,
                               "grounding_unnamed_share": 0.2}},
        "stages": [{
            "name": "stage1", "stage": {"preset": "stage1"},
            "training": {"max_steps": 2, "per_device_train_batch_size": 4, "save_strategy": "no", "use_cpu": True,
                         "disable_tqdm": True},
            "data": {"data_path": str(data / "train.json"), "video_folder": str(data / "videos"),
                     "template": "plain_guided", "model_max_length": 512, "cache_vision_features": True},
        }],
    })


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from llamavid.toy.synthetic import SyntheticSettings, generate

    out = tmp_path_factory.mktemp("stage0-synthetic")
    generate(out, SyntheticSettings(num_videos=16, heldout_videos=2, seed=4))
    return out


def test_stage0_trains_the_tower_and_the_grounding_and_shares_its_frames(toy_data, tmp_path, monkeypatch):
    import llamavid.media
    from llamavid.toy.stage0 import load_vision_tower
    from llamavid.train.run import build_model

    decoded = []
    original = llamavid.media.load_video

    def counting(path, *args, **kwargs):
        decoded.append(str(path))
        return original(path, *args, **kwargs)

    monkeypatch.setattr(llamavid.media, "load_video", counting)
    recipe = _recipe(toy_data, tmp_path)
    stage0 = run_recipe(recipe)["stage0"]
    log = stage0["grounding_log"]
    assert log[-1]["mass"] > log[0]["mass"] + 0.1, "the queries learn to look at the named object"
    assert 0 <= stage0["heldout_grounding_mass"] <= 1
    by_naming = stage0["heldout_grounding_by_naming"]  # two-object frames, per way of naming the object
    assert set(by_naming) <= {"shape", "colour", "both"} and all(0 <= v <= 1 for v in by_naming.values())
    assert 0 <= stage0["heldout_grounding_unnamed"] <= 1  # order prompts: the mass on all the frame's objects
    videos = {r["video"] for split in ("train", "heldout") for r in json.loads((toy_data / f"{split}.json").read_text())}
    assert len(decoded) == len(videos), "stage 1 reuses stage 0's decoded frames: no video is decoded twice"

    saved = load_file(str(tmp_path / "stage0" / "vision_tower.safetensors"))
    assert any(k.startswith(GROUNDING_PREFIXES) for k in saved)
    assert any(k.startswith("vision_tower.") for k in saved)
    fresh, _ = build_model(recipe.model, recipe)
    load_vision_tower(fresh, tmp_path / "stage0")
    state = fresh.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items())


def test_a_rerun_reuses_a_finished_stage0_with_the_same_settings_only(toy_data, tmp_path, monkeypatch):
    import copy

    import llamavid.toy.stage0 as stage0_module

    recipe = _recipe(toy_data, tmp_path)
    first = run_recipe(recipe)["stage0"]
    tower = load_file(str(tmp_path / "stage0" / "vision_tower.safetensors"))
    trained = []
    original = stage0_module.pretrain_vision
    monkeypatch.setattr(stage0_module, "pretrain_vision", lambda *a, **k: trained.append(1) or original(*a, **k))

    again = run_recipe(recipe)["stage0"]  # e.g. after stage 2 failed: stage 0 is not trained again
    assert not trained and again["reused"] is True
    assert again["heldout_grounding_mass"] == first["heldout_grounding_mass"]
    assert all(torch.equal(v, tower[k]) for k, v in load_file(str(tmp_path / "stage0" / "vision_tower.safetensors")).items())

    record_file = tmp_path / "stage0" / "figures.json"
    record = json.loads(record_file.read_text())
    del record["settings"]["position_weight"]  # as written before that setting existed, at its default now
    record_file.write_text(json.dumps(record))
    assert run_recipe(recipe)["stage0"]["reused"] is True and not trained

    changed = copy.deepcopy(recipe)
    changed.prepare["stage0"]["grounding_steps"] = 8
    assert "reused" not in run_recipe(changed)["stage0"] and trained == [1], "other settings: trained again"

    deeper = copy.deepcopy(recipe)  # the old tower's tensors would all load into this one: not enough to reuse
    deeper.model.settings["vision_layers"] = 2
    assert "reused" not in run_recipe(deeper)["stage0"] and trained == [1, 1], "another tower: trained again"
