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
