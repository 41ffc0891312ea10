from pathlib import Path

import pytest

from llamavid import LlamaVidConfig
from llamavid.testing import tiny_config


@pytest.mark.parametrize(
    ("overrides", "tokens"),
    [
        ({"compress": "mean"}, 2),
        ({"compress": "none"}, 17),
        ({"compress": "grid", "grid_size": 2}, 5),
        # a grid that does not divide the 4x4 patch grid floors the stride (4 // 3 = 1): 16 cells, as the original
        ({"compress": "grid", "grid_size": 3}, 17),
        ({"compress": "grid", "grid_size": 4}, 17),
    ],
)
def test_tokens_per_frame_is_derived_from_compression(overrides, tokens):
    config = tiny_config(**overrides)
    assert config.num_patches == 16
    assert config.tokens_per_frame == tokens


def test_released_sizes():
    config = LlamaVidConfig(compress="none")
    assert config.tokens_per_frame == 257  # 224 px image models: 1 context + 256 content
    config = LlamaVidConfig(compress="none", vision_config={"image_size": 336})
    assert config.tokens_per_frame == 577
    assert LlamaVidConfig(compress="grid", grid_size=4).tokens_per_frame == 17
    assert LlamaVidConfig(compress="mean").tokens_per_frame == 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"compress": "grid"}, "grid_size"),
        ({"compress": "grid", "grid_size": 1}, "grid_size"),
        ({"compress": "grid", "grid_size": 9}, "grid_size"),
        ({"compress": "mean", "grid_size": 2}, "grid_size"),
        ({"compress": "avg"}, "compress"),
        ({"num_query": 0}, "num_query"),
        ({"image_token_id": 5}, "image_token_id"),
        ({"qformer_chunk_size": 0}, "qformer_chunk_size"),
        ({"projector_type": "mlp3x_gelu"}, "projector_type"),
    ],
)
def test_validation_errors_name_the_field(overrides, field):
    with pytest.raises(ValueError, match=rf"\b{field}\b"):
        tiny_config(**overrides)


def test_round_trip(tmp_path):
    config = tiny_config(compress="grid", grid_size=2, chat_template="imgsp_v1", pad_to_square=False)
    config.save_pretrained(tmp_path)
    loaded = LlamaVidConfig.from_pretrained(tmp_path)
    assert loaded.tokens_per_frame == config.tokens_per_frame == 5
    assert (loaded.chat_template, loaded.pad_to_square, loaded.image_token_id) == ("imgsp_v1", False, 320)
    assert loaded.qformer_config.encoder_hidden_size == loaded.vision_config.hidden_size


SAVED_CONFIGS = Path(__file__).parents[1] / "data" / "saved_configs"

# What the folders in SAVED_CONFIGS hold: `<name>-<transformers version that saved it>/config.json`, written by
# `config.save_pretrained` on the lowest supported transformers (5.16, sub-configs built by LlamaVidConfig) and
# on one with `SubConfigSpec` (5.24, sub-configs built by transformers). They were saved when the default
# qformer_chunk_size was 256 (now 64), which they hold.
SAVED = {
    "tiny": lambda: tiny_config(
        qformer_chunk_size=256,
        compress="grid",
        grid_size=2,
        chat_template="imgsp_v1",
        text_overrides={"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}},
    ),
    "default": lambda: LlamaVidConfig(vision_config={"image_size": 336}, qformer_chunk_size=256),
}


def _comparable(config) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in ("transformers_version", "_name_or_path")}


@pytest.mark.parametrize("folder", sorted(p.name for p in SAVED_CONFIGS.iterdir()))
def test_folders_saved_by_any_supported_transformers_load_the_same(folder):
    name = folder.rsplit("-", 1)[0]
    loaded = LlamaVidConfig.from_pretrained(SAVED_CONFIGS / folder)
    assert _comparable(loaded) == _comparable(SAVED[name]())
    assert type(loaded.text_config).__name__ == "LlamaConfig"
    assert type(loaded.vision_config).__name__ == "InstructBlipVisionConfig"
    assert loaded.qformer_config.encoder_hidden_size == loaded.vision_config.hidden_size


def test_saved_configs_cover_both_ways_of_building_sub_configs():
    assert {p.name.rsplit("-", 1)[1] for p in SAVED_CONFIGS.iterdir()} == {"5.16.0", "5.24.0"}


@pytest.mark.parametrize("name", sorted(SAVED))
def test_round_trip_keeps_every_field(tmp_path, name):
    config = SAVED[name]()
    config.save_pretrained(tmp_path)
    assert _comparable(LlamaVidConfig.from_pretrained(tmp_path)) == _comparable(config)


def test_sub_config_models_come_from_their_model_type():
    config = tiny_config(text_overrides={"model_type": "qwen2"})
    assert type(config.text_config).__name__ == "Qwen2Config"
    assert type(LlamaVidConfig(text_config={"vocab_size": 50}).text_config).__name__ == "LlamaConfig"
    with pytest.raises(ValueError, match="text_config: unknown model_type 'no-such-llm'"):
        tiny_config(text_overrides={"model_type": "no-such-llm"})
