"""Recipes, configs, sampler and collator (fast)."""

import json
from pathlib import Path

import pytest
import torch

from llamavid.train.recipe import apply_overrides, load_recipe
from llamavid.train.sampler import modality_grouped
from llamavid.train.stages import StageSettings

RECIPES = Path(__file__).parents[2] / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.stages
    for run in recipe.stages:
        ds = run.training.get("deepspeed")
        if ds:
            assert (RECIPES.parent / ds).is_file()


def test_released_hyper_parameters():
    recipe = load_recipe(RECIPES / "llama-vid-7b-full-224-video-fps-1.yaml")
    stage1, stage2 = recipe.stages
    assert stage1.stage.adapter_only and not stage1.stage.qformer and not stage1.stage.llm
    assert stage1.training["learning_rate"] == 1e-3 and stage1.data.template == "plain_guided"
    assert stage2.stage.qformer and stage2.stage.llm and stage2.training["learning_rate"] == 2e-5
    assert stage2.training["per_device_train_batch_size"] * stage2.training["gradient_accumulation_steps"] * 8 == 128
    long = load_recipe(RECIPES / "llama-vid-7b-full-224-long-video.yaml").stages[0]
    assert long.data.model_max_length == 65536 and not long.stage.qformer and not long.stage.qformer_projectors


@pytest.mark.parametrize("name", ["zero2", "zero2_offload", "zero3"])
def test_deepspeed_configs_are_valid_for_transformers(name):
    """The JSON against what HfDeepSpeedConfig needs (fast, without deepspeed); tests/train/test_distributed.py
    trains with zero2 and zero3 in two processes."""
    config = json.loads((RECIPES / "deepspeed" / f"{name}.json").read_text())
    stage = config["zero_optimization"]["stage"]
    assert stage == (3 if name == "zero3" else 2)
    for key in ("train_micro_batch_size_per_gpu", "gradient_accumulation_steps", "train_batch_size"):
        assert config[key] == "auto"  # filled by the Trainer from TrainingArguments
    if name == "zero3":
        # saving the consolidated 16-bit weights: the Q-Former must come back whole
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    if name == "zero2_offload":
        assert config["zero_optimization"]["offload_optimizer"]["device"] == "cpu"


def test_fsdp_config_names_real_layer_classes():
    import yaml
    from transformers.models.instructblip import modeling_instructblip as ib
    from transformers.models.llama import modeling_llama as ll

    config = yaml.safe_load((RECIPES / "accelerate" / "fsdp.yaml").read_text())
    for name in config["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"].split(","):
        assert hasattr(ib, name) or hasattr(ll, name), name


def test_overrides_address_stages_by_name():
    raw = {"name": "x", "stages": [{"name": "stage1", "training": {"lr": 1}}]}
    out = apply_overrides(raw, ["stages.stage1.training.lr=0.5", "seed=3"])
    assert out["stages"][0]["training"]["lr"] == 0.5 and out["seed"] == 3
    with pytest.raises(ValueError, match="no list item"):
        apply_overrides(raw, ["stages.nope.training.lr=1"])


def test_stage_conflicts_name_the_fields():
    with pytest.raises(ValueError, match="stage.lora and stage.llm"):
        StageSettings(llm=True, lora={"rank": 4})
    with pytest.raises(ValueError, match="adapter_only"):
        StageSettings(llm=True, adapter_only=True)


def test_modality_sampler_keeps_batches_single_modality():
    lengths = [5, -3, 7, -2, 9, 4, -8, 6, -1, 3, 2, -4]
    order = modality_grouped(lengths, 2, 1, torch.Generator().manual_seed(0))
    assert sorted(order) == list(range(len(lengths)))
    batches = [order[i : i + 2] for i in range(0, len(order), 2)]
    mixed = [b for b in batches if len({lengths[i] > 0 for i in b}) > 1]
    assert len(mixed) <= 1  # only the leftover batch may mix
    only_media = modality_grouped([3, 4, 5], 2, 1, torch.Generator().manual_seed(0))
    assert sorted(only_media) == [0, 1, 2]  # the original crashed here


def test_collator_expands_and_truncates(sp_tokenizer):
    from llamavid.testing import tiny_model_and_processor
    from llamavid.train.collator import Collator

    model, processor = tiny_model_and_processor()
    processor.tokenizer = sp_tokenizer
    ph = model.config.image_token_id
    sample = {"input_ids": [1, 5, ph, 6, 7, ph, 8], "labels": [-100, -100, -100, -100, 7, -100, 8],
              "prompts": ["a", "b"], "pixel_values": torch.zeros(3, 3, 28, 28), "expand_each": 3 * 2,
              "per_segment": 1}
    batch = Collator(processor, 4)([sample, {"input_ids": [1, 9], "labels": [-100, 9], "prompts": []}])
    assert (batch["input_ids"][0] == ph).sum() == 6  # one placeholder survived truncation, 3 frames x 2
    assert batch["qformer_input_ids"].shape[0] == 1 and batch["segment_media_index"].tolist() == [0]
    assert batch["attention_mask"][1].sum() == 2
    out = model(**{k: v for k, v in batch.items() if k != "labels"}, labels=batch["labels"])
    assert torch.isfinite(out.loss)
