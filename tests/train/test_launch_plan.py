"""What a recipe run decides before training (fast): one stage per launch under DeepSpeed/FSDP, the dtype the
model is built in, and composing `model.llm` + `model.visual_from` (exact, in that dtype, refused under
ZeRO-3's zero.Init)."""

from pathlib import Path

import pytest
import torch

from llamavid.errors import RecipeError
from llamavid.testing import save_llm_folder
from llamavid.train.recipe import ModelSource, load_recipe
from llamavid.train.run import check_one_stage_per_launch, compose_stages, starting_dtype

RELEASED = Path(__file__).parents[2] / "recipes" / "llama-vid-7b-full-224-video-fps-1.yaml"
WITHOUT_DEEPSPEED = ["stages.stage1.training.deepspeed=null", "stages.stage2.training.deepspeed=null"]


def test_deepspeed_recipes_run_one_stage_per_launch():
    recipe = load_recipe(RELEASED)
    with pytest.raises(RecipeError, match="one stage per launch \\(--only stage1, then --only stage2;"):
        check_one_stage_per_launch(recipe, None)
    check_one_stage_per_launch(recipe, "stage2")  # one stage: fine
    check_one_stage_per_launch(load_recipe(RELEASED, WITHOUT_DEEPSPEED), None)  # DDP takes both stages


def test_fsdp_from_the_accelerate_config_counts_too(monkeypatch):
    recipe = load_recipe(RELEASED, WITHOUT_DEEPSPEED)
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")  # what `accelerate launch --config_file fsdp.yaml` sets
    with pytest.raises(RecipeError, match="DeepSpeed or FSDP"):
        check_one_stage_per_launch(recipe, None)


def test_the_model_starts_in_the_dtype_deepspeed_trains():
    assert starting_dtype(load_recipe(RELEASED)) == torch.bfloat16  # not 28 GB of float32 a rank for 7B
    assert starting_dtype(load_recipe(RELEASED, ["stages.stage2.training.deepspeed=null"])) == torch.float32
    only_first = load_recipe(RELEASED, ["stages.stage2.training.deepspeed=null"])
    assert starting_dtype(only_first, "stage1") == torch.bfloat16
    assert starting_dtype(load_recipe(RELEASED, ["stages.stage1.training.bf16=false"]), "stage1") == torch.float32


@pytest.fixture(scope="module")
def folders(tiny, tiny_folder, tmp_path_factory):
    """The visual parts' llamavid folder (`tiny_folder`) and an HF LLM folder with other weights."""
    from llamavid.testing import tiny_model_and_processor

    root = tmp_path_factory.mktemp("compose")
    other, other_processor = tiny_model_and_processor(seed=1)
    save_llm_folder(other, other_processor, root / "llm")
    return root / "llm", tiny_folder, tiny[0], other.language_model


def test_compose_is_exact_in_the_training_dtype(folders):
    llm_folder, visual_folder, visual, llm = folders
    model, processor = compose_stages(ModelSource(llm=str(llm_folder), visual_from=str(visual_folder)), torch.bfloat16)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.text_config.num_hidden_layers == 2 and len(model.language_model.model.layers) == 2
    state = model.state_dict()
    for name, tensor in visual.state_dict().items():
        if not name.startswith("language_model."):
            assert torch.equal(state[name], tensor.to(torch.bfloat16)), name
    for name, tensor in llm.state_dict().items():
        assert torch.equal(state[f"language_model.{name}"], tensor.to(torch.bfloat16)), name
    assert processor.tokenizer is not None


def test_compose_is_refused_under_zero3_init(folders):
    pytest.importorskip("deepspeed")
    from transformers.integrations import HfDeepSpeedConfig

    llm_folder, visual_folder, _, _ = folders
    active = HfDeepSpeedConfig({"train_batch_size": 1, "zero_optimization": {"stage": 3}})  # zero.Init while alive
    with pytest.raises(RecipeError, match="zero.Init"):
        compose_stages(ModelSource(llm=str(llm_folder), visual_from=str(visual_folder)))
    del active
