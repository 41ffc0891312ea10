"""The writer of release-shaped random checkpoints: its key layout is the one the converter reads (checked on meta
tensors, so at the real 7B/13B widths in a second), its configs follow the released variants, and its values are
deterministic per key."""

import pytest
import torch

from llamavid.model.convert import build_config, check_complete, original_to_ours
from llamavid.model.modeling import LlamaVidForConditionalGeneration
from llamavid.toy.release_layout import (
    eva_file_shapes,
    model_folder_shapes,
    original_config,
    plan_shards,
    random_tensor,
    release_variant,
)


@pytest.mark.parametrize(
    "variant, layers",
    [("llama-vid-7b-full-224-long-video", 2), ("llama-vid-13b-full-336", 1), ("llama-vid-7b-full-224", None)],
)
def test_release_layout_converts_exactly_on_meta_tensors(variant, layers):
    _, llm, image_size = release_variant(variant, None)
    original = original_config(variant, layers)
    shapes = model_folder_shapes(original, image_size)
    state = {k: torch.empty(shape, dtype=dtype, device="meta") for k, (shape, dtype) in shapes.items()}
    eva = {k: torch.empty(shape, dtype=torch.float16, device="meta") for k, shape in eva_file_shapes().items()}
    config = build_config(original, state, eva, image_size)
    assert config.text_config.hidden_size == {"7b": 4096, "13b": 5120}[llm]
    assert config.text_config.num_hidden_layers == (layers or {"7b": 32, "13b": 40}[llm])
    assert config.vision_config.num_hidden_layers == 39 and config.image_size == image_size
    assert config.qformer_config.vocab_size == 30523 and config.num_query == 32
    eva["pos_embed"] = torch.zeros(eva_file_shapes()["pos_embed"], dtype=torch.float16)  # resized for 336
    weights = original_to_ours(state, eva, config)
    with torch.device("meta"):
        model = LlamaVidForConditionalGeneration(config)
    check_complete(model, weights)


def test_long_video_config_has_the_release_rope_and_limits():
    config = original_config("YanweiLi/llama-vid-7b-full-224-long-video")
    assert config["rope_scaling"] == {"type": "linear", "factor": 16.0}
    assert config["max_token"] == 65536 and config["bert_type"] == "qformer_pretrain_freeze_all"
    assert config["model_type"] == "llava" and config["torch_dtype"] == "bfloat16"
    with pytest.raises(ValueError, match="13b"):
        release_variant("llama-vid-13b-full-336", "7b")


def test_values_are_deterministic_per_key_and_shards_respect_the_size():
    a = random_tensor("model.layers.0.mlp.up_proj.weight", torch.Size([8, 16]), torch.bfloat16, seed=0)
    b = random_tensor("model.layers.0.mlp.up_proj.weight", torch.Size([8, 16]), torch.bfloat16, seed=0)
    c = random_tensor("model.layers.1.mlp.up_proj.weight", torch.Size([8, 16]), torch.bfloat16, seed=0)
    assert a.dtype == torch.bfloat16 and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(random_tensor("model.norm.weight", torch.Size([4]), torch.bfloat16, 0), torch.ones(4))
    assert plan_shards({"a": 4, "b": 4, "c": 9, "d": 1}, 8) == [["a", "b"], ["c"], ["d"]]
