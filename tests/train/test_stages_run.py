"""Stages end to end on a toy model and a toy synthetic set (a few steps each): stage 1 -> stage 2 hand-over,
resume from a checkpoint, a LoRA stage, and counted data errors."""

import copy
import json

import pytest
import torch

from llamavid.train.recipe import recipe_from_dict
from llamavid.train.run import run_recipe


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    from llamavid.toy.synthetic import SyntheticSettings, generate

    out = tmp_path_factory.mktemp("toy-synthetic")
    generate(out, SyntheticSettings(num_videos=16, heldout_videos=2, seed=3))
    return out


def toy_recipe(data, out, stage2: dict | None = None, **training) -> dict:
    """Two stages of a very small LLaMA-VID on `data`; `training` changes both stages' TrainingArguments."""
    from llamavid.toy.recipes import two_stage_recipe

    return two_stage_recipe(data, out, stage2, **training)


def test_stage1_hands_its_adapter_to_stage2(toy_data, tmp_path):
    from safetensors.torch import load_file

    from llamavid.train.run import build_model

    raw = toy_recipe(toy_data, tmp_path / "run")
    raw["stages"][1]["training"]["learning_rate"] = 0.0  # stage 2 changes nothing: its start is its end
    recipe = recipe_from_dict(raw)
    figures = run_recipe(recipe)
    adapter = load_file(str(tmp_path / "run" / "stage1" / "visual_adapter.safetensors"))
    assert adapter and all(name.startswith("token_generator.") for name in adapter)
    assert not any((tmp_path / "run" / "stage1").glob("*.bin"))  # adapter only, no LLM weights
    assert figures["stage1"]["steps"] == 3 and figures["stage2"]["steps"] == 3
    fresh, _ = build_model(recipe.model, recipe)
    final = load_file(str(tmp_path / "run" / "stage2" / "model.safetensors"))
    name = "token_generator.content_projector.0.weight"
    assert not torch.equal(fresh.state_dict()[name], adapter[name])  # stage 1 trained it
    for key, tensor in adapter.items():
        assert torch.equal(final[key], tensor), key  # stage 2 started from stage 1's weights


@pytest.mark.parametrize("preset", ["stage1", "stage2"])
def test_resume_from_checkpoint_gives_the_same_loss_curve(toy_data, tmp_path, preset):
    raw = toy_recipe(toy_data, tmp_path / "whole", max_steps=4, save_strategy="steps", save_steps=2)
    raw["stages"] = [s for s in raw["stages"] if s["name"] == preset]
    raw["stages"][0].pop("init_adapter", None)
    whole = run_recipe(recipe_from_dict(raw))[preset]["losses"]

    broken = copy.deepcopy(raw)
    broken["output_dir"] = str(tmp_path / "broken")
    broken["stages"][0]["training"]["max_steps"] = 2
    first = run_recipe(recipe_from_dict(broken))[preset]["losses"]
    stage_dir = tmp_path / "broken" / preset
    assert (stage_dir / "checkpoint-2").is_dir()
    broken["stages"][0]["training"]["max_steps"] = 4
    resumed = run_recipe(recipe_from_dict(broken))[preset]  # finds checkpoint-2 and resumes
    assert resumed["steps"] == 4
    assert len(whole) == 4 and min(whole) > 0 and first == pytest.approx(whole[:2], rel=1e-5)
    assert resumed["losses"] == pytest.approx(whole, rel=1e-5)


def test_checkpoints_of_other_settings_are_not_resumed(toy_data, tmp_path):
    """A rerun after a recipe change must not continue the old run's checkpoints as if they were its own."""
    raw = toy_recipe(toy_data, tmp_path / "run", max_steps=2, save_strategy="steps", save_steps=2)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].pop("init_adapter")
    run_recipe(recipe_from_dict(raw))
    assert (tmp_path / "run" / "stage2" / "checkpoint-2").is_dir()
    changed = copy.deepcopy(raw)
    changed["stages"][0]["stage"] = {"preset": "stage2", "qformer": False}
    changed["stages"][0]["training"]["learning_rate"] = 5e-4
    with pytest.raises(ValueError, match=r"other settings \(stage.qformer: True -> False, training.learning_rate"):
        run_recipe(recipe_from_dict(changed))
    # A record written before a setting existed (here: data.repeat_by_type) still resumes while the rerun keeps
    # that setting's default.
    record_file = tmp_path / "run" / "stage2" / "stage_settings.json"
    record = json.loads(record_file.read_text())
    del record["data"]["repeat_by_type"], record["shared_prefix"]
    record_file.write_text(json.dumps(record))
    longer = copy.deepcopy(raw)
    longer["stages"][0]["training"].update(max_steps=3, logging_steps=2)  # extending a run is a resume
    assert run_recipe(recipe_from_dict(longer))["stage2"]["steps"] == 3


def test_lora_stage_end_to_end(toy_data, tmp_path):
    from llamavid.inference.loading import load_model

    lora = {"preset": "stage2", "lora": {"rank": 4, "alpha": 8, "dropout": 0.0}}
    raw = toy_recipe(toy_data, tmp_path / "run", stage2=lora, learning_rate=5e-3)
    raw["stages"] = raw["stages"][1:]
    raw["stages"][0].pop("init_adapter")
    recipe = recipe_from_dict(raw)
    from llamavid.train.run import build_model
    from llamavid.train.stages import StageSettings, apply_stage

    fresh = build_model(recipe.model, recipe)[0]
    before = {k: v.clone() for k, v in fresh.language_model.state_dict().items()}
    without_llm = apply_stage(fresh, StageSettings.preset("stage2", llm=False))
    figures = run_recipe(recipe)["stage2"]
    lora_size = 2 * (4 * 32 + 32 * 4)  # rank 4 A and B on q_proj and v_proj (32 wide) of the one layer
    assert figures["trainable_parameters"] == without_llm + lora_size
    assert min(figures["losses"]) > 0
    assert all(torch.isfinite(torch.tensor(figures["losses"])))
    model, processor = load_model(tmp_path / "run" / "stage2", device="cpu", dtype="float32")
    after = model.language_model.state_dict()
    assert not any("lora" in key for key in after)  # merged into a plain LLaMA
    assert not torch.equal(after["model.layers.0.self_attn.q_proj.weight"],
                           before["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(after["model.layers.0.mlp.up_proj.weight"], before["model.layers.0.mlp.up_proj.weight"])


def test_a_later_stage_trains_on_an_earlier_stages_unmerged_lora(toy_data, tmp_path):
    """A curriculum in two LoRA stages: the second keeps training the first one's adapters (not a second set on
    top of them), and asking for other adapters is an error."""
    from peft import PeftModel

    from llamavid.train.run import build_model
    from llamavid.train.stages import StageSettings, apply_stage

    recipe = recipe_from_dict(toy_recipe(toy_data, tmp_path / "run"))
    model = build_model(recipe.model, recipe)[0]
    lora = {"rank": 4, "alpha": 8, "dropout": 0.0}
    first = apply_stage(model, StageSettings.preset("stage2", lora=lora, merge_lora=False))
    wrapped = model.language_model
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.fill_(0.5)  # as if trained
    for parameter in model.parameters():
        parameter.requires_grad_(False)  # what run_stage leaves behind
    second = apply_stage(model, StageSettings.preset("stage2", lora=lora, merge_lora=False))
    assert model.language_model is wrapped and isinstance(wrapped, PeftModel)
    assert second == first
    trained = [p for n, p in wrapped.named_parameters() if "lora_B" in n]
    assert trained and all(p.requires_grad and bool((p == 0.5).all()) for p in trained)
    with pytest.raises(ValueError, match="r \\(4 != 8\\)"):
        apply_stage(model, StageSettings.preset("stage2", lora={**lora, "rank": 8}, merge_lora=False))


def test_dataset_counts_load_errors_and_can_fail(toy_data, tmp_path):
    from llamavid.train.data import DataError, DataSettings, SupervisedDataset
    from llamavid.train.run import build_model

    records = json.loads((toy_data / "train.json").read_text())[:4]
    records[1] = {**records[1], "video": "missing.mp4"}
    records[2] = {**records[2], "video": "also-missing.mp4"}
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    recipe = recipe_from_dict(toy_recipe(toy_data, tmp_path / "run"))
    model, processor = build_model(recipe.model, recipe)
    settings = DataSettings(data_path=str(path), video_folder=str(toy_data / "videos"), max_frames=2)
    dataset = SupervisedDataset(settings, processor)
    sample = dataset[1]  # 1 and 2 fail: 3 stands in, and both failures are counted
    assert dataset.stats["load_errors"] == 2 and dataset.stats["samples"] == 1
    assert sample["input_ids"] == dataset.load(3)["input_ids"]
    strict = SupervisedDataset(
        DataSettings(data_path=str(path), video_folder=str(toy_data / "videos"), on_error="fail"),
        processor,
    )
    with pytest.raises(DataError, match="failed to load"):
        strict[2]
    assert strict.stats["load_errors"] == 1
    with pytest.raises(ValueError, match="frozen"):
        SupervisedDataset(DataSettings(data_path=str(path), cache_vision_features=True),
                          processor)


def test_shared_prefix_gives_the_same_losses(toy_data, tmp_path, monkeypatch):
    """The batch's common prefix (BOS + system prompt) run once gives the same loss curve as full rows."""
    from transformers.models.llama.modeling_llama import LlamaModel

    shapes, forward = [], LlamaModel.forward

    def recording(self, *args, **kwargs):  # what the LLM is asked to run: (rows, tokens) of each call
        embeds = kwargs.get("inputs_embeds")
        shapes[-1].append(tuple(embeds.shape[:2]))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(LlamaModel, "forward", recording)
    curves = []
    for shared in (False, True):
        raw = toy_recipe(toy_data, tmp_path / f"run-{shared}")
        raw["stages"][1]["shared_prefix"] = shared
        shapes.append([])
        curves.append(run_recipe(recipe_from_dict(raw))["stage2"]["losses"])
    assert len(curves[0]) == 3
    assert curves[1] == pytest.approx(curves[0], rel=1e-4)
    prefix_runs = [length for rows, length in shapes[1] if rows == 1]
    assert len(prefix_runs) == 3 and min(prefix_runs) > 10  # BOS + the Vicuna system prompt, once a stage-2 step
    assert not [shape for shape in shapes[0] if shape[0] == 1]  # without it, whole batches only


def test_visual_lr_scale_gives_the_token_generator_its_own_learning_rate(toy_data, tmp_path):
    from transformers import TrainingArguments

    from llamavid.train.run import build_model
    from llamavid.train.stages import StageSettings, apply_stage
    from llamavid.train.trainer import LlamaVidTrainer

    recipe = recipe_from_dict(toy_recipe(toy_data, tmp_path / "run"))
    model, _ = build_model(recipe.model, recipe)
    apply_stage(model, StageSettings.preset("stage2"))
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=1e-3, use_cpu=True, report_to="none")
    trainer = LlamaVidTrainer(model=model, args=args, stage=StageSettings.preset("stage2"), visual_lr_scale=5.0)
    optimizer = trainer.create_optimizer()
    rates = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            assert rates[id(parameter)] == pytest.approx(5e-3 if name.startswith("token_generator.") else 1e-3)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(p.requires_grad for p in model.parameters())


def test_repeat_by_type_weighs_the_training_mix(toy_data, tmp_path):
    from llamavid.train.data import DataSettings, SupervisedDataset
    from llamavid.train.run import build_model

    records = json.loads((toy_data / "train.json").read_text())
    kinds = [r["type"] for r in records]  # the generator tags every training record with its question type
    assert set(kinds) <= {"colour", "shape", "direction", "order"} and "direction" in kinds
    recipe = recipe_from_dict(toy_recipe(toy_data, tmp_path / "run"))
    model, processor = build_model(recipe.model, recipe)

    def dataset(repeats):
        settings = DataSettings(data_path=str(toy_data / "train.json"), video_folder=str(toy_data / "videos"),
                                repeat_by_type=repeats)
        return SupervisedDataset(settings, processor)

    mixed = dataset({"direction": 3})
    assert len(mixed) == len(records) + 2 * kinds.count("direction")
    assert [r["type"] for r in mixed.records].count("direction") == 3 * kinds.count("direction")
    assert len(mixed.lengths) == len(mixed)
    only = dataset({"colour": 0, "shape": 0, "order": 0})
    assert {r["type"] for r in only.records} == {"direction"}
    with pytest.raises(ValueError, match="leaves no record"):
        dataset(dict.fromkeys(set(kinds), 0))
    with pytest.raises(ValueError, match="'speed'"):
        dataset({"speed": 2})
    with pytest.raises(ValueError, match="whole number"):
        DataSettings(data_path="x.json", repeat_by_type={"direction": -1})


def test_cached_feature_encoder_follows_the_towers_dtype_and_returns_cpu_features():
    """The data loader's pixels are CPU float32; the frozen tower may be on an accelerator in another dtype (the
    Trainer moves the model after the dataset is built). Features come back on the CPU for the cache."""
    from llamavid.testing import tiny_model_and_processor
    from llamavid.train.run import frozen_encoder

    model, _ = tiny_model_and_processor()
    model.vision_tower.to(torch.float64).train()
    pixels = torch.rand(3, 3, model.config.image_size, model.config.image_size)
    features = frozen_encoder(model)(pixels)
    assert features.device.type == "cpu" and features.dtype == torch.float64
    assert not features.requires_grad
    assert model.vision_tower.training  # the encoder's eval mode does not leak into training
    expected = model.eval().get_vision_features(pixels.double())
    torch.testing.assert_close(features, expected)


def test_merging_a_lora_into_sharded_weights_is_refused_before_training(toy_data, tmp_path):
    from pathlib import Path

    from llamavid.train.recipe import RecipeError
    from llamavid.train.run import build_model, prepare_stage

    raw = toy_recipe(toy_data, tmp_path / "run", stage2={"preset": "stage2", "lora": {"rank": 4}},
                     deepspeed=str(Path(__file__).parents[2] / "recipes" / "deepspeed" / "zero3.json"))
    recipe = recipe_from_dict(raw)
    model, processor = build_model(recipe.model, recipe)
    run = recipe.stage("stage2")
    run.init_adapter = None  # this stage alone
    with pytest.raises(RecipeError, match="merge_lora=true cannot merge sharded"):
        prepare_stage(model, processor, run, recipe, None, tmp_path / "run" / "stage2", None)


def test_extending_the_context_rebuilds_the_rotary_embedding_through_a_lora(toy_data, tmp_path):
    """Stage 3's RoPE scaling on an LLM an earlier stage left wrapped in an unmerged LoRA."""
    from llamavid.train.run import build_model, extend_context
    from llamavid.train.stages import StageSettings, apply_stage

    recipe = recipe_from_dict(toy_recipe(toy_data, tmp_path / "run"))
    model = build_model(recipe.model, recipe)[0]
    apply_stage(model, StageSettings.preset("stage2", lora={"rank": 4}, merge_lora=False))
    decoder = model.language_model.get_decoder()
    before = decoder.rotary_emb.inv_freq.clone()
    positions = model.config.text_config.max_position_embeddings
    extend_context(model, positions * 4)
    rotary = model.language_model.get_decoder().rotary_emb
    assert rotary is not None and rotary.rope_type == "linear"
    torch.testing.assert_close(rotary.inv_freq, before / 4)  # linear scaling divides the frequencies
