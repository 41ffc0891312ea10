"""The importer on tiny state dicts made here: both directions of the rename tables, the EVA bias merge, the
position-embedding resize, strictness about keys, and a full release folder converted through the CLI."""

import json
import subprocess
import sys

import pytest
import torch

from llamavid import LlamaVidForConditionalGeneration, LlamaVidProcessor
from llamavid.model.convert import (
    ConversionError,
    build_config,
    eva_to_ours,
    original_to_ours,
    ours_to_eva,
    ours_to_original,
    parse_compress_type,
    resize_position_embedding,
)
from llamavid.testing import tiny_model_and_processor


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory):
    """A tiny model written in the original's on-disk layout: sharded .bin + index, LAVIS EVA .pth, BERT vocab,
    CLIP processor folder, LLM tokenizer; plus the model it came from."""
    model, processor = tiny_model_and_processor(seed=7, compress="grid", grid_size=2)
    root = tmp_path_factory.mktemp("release")
    release, proc_dir = root / "llama-vid-tiny", root / "processor"
    release.mkdir()
    proc_dir.mkdir()
    original, eva = ours_to_original(model.state_dict())
    original["model.vlm_att_encoder.bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    keys = sorted(original)
    shards = {
        "pytorch_model-00001-of-00002.bin": keys[: len(keys) // 2],
        "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2 :],
    }
    weight_map = {}
    for name, shard_keys in shards.items():
        torch.save({k: original[k] for k in shard_keys}, release / name)
        weight_map.update(dict.fromkeys(shard_keys, name))
    (release / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    text = model.config.text_config
    (release / "config.json").write_text(
        json.dumps(
            {
                "model_type": "llava",
                "bert_type": "qformer_pretrain",
                "compress_type": "grid:2",
                "mm_projector_type": "mlp2x_gelu",
                "image_aspect_ratio": "pad",
                "max_token": 2048,
                "hidden_size": text.hidden_size,
                "intermediate_size": text.intermediate_size,
                "num_hidden_layers": text.num_hidden_layers,
                "num_attention_heads": text.num_attention_heads,
                "num_key_value_heads": text.num_key_value_heads,
                "vocab_size": text.vocab_size,
                "rms_norm_eps": 1e-6,
                "max_position_embeddings": text.max_position_embeddings,
                "rope_scaling": None,
                "hidden_act": "silu",
                "pad_token_id": 0,
                "bos_token_id": 1,
                "eos_token_id": 2,
                "tie_word_embeddings": False,
            }
        )
    )
    torch.save(eva, root / "eva_vit_g.pth")
    processor.tokenizer.save_pretrained(release)
    vocab = processor.qformer_tokenizer.get_vocab()
    (root / "vocab.txt").write_text(
        "\n".join(t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if t != "[DEC]")
    )
    (proc_dir / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "crop_size": model.config.image_size,
                "size": model.config.image_size,
                "do_center_crop": True,
                "do_normalize": True,
                "do_resize": True,
                "resample": 3,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
            }
        )
    )
    return model, processor, root


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "llamavid.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_rename_tables_round_trip(tiny_release):
    model, _, _ = tiny_release
    ours = model.state_dict()
    original, eva = ours_to_original(ours)
    assert "model.vlm_att_query" in original and "blocks.0.attn.q_bias" in eva
    assert not any(k.startswith(("language_model", "token_generator")) for k in original)
    back = original_to_ours(original, eva, model.config)
    assert set(back) == set(ours)
    for key in ours:
        torch.testing.assert_close(back[key], ours[key], msg=key)


def test_eva_q_v_biases_become_one_qkv_bias_with_zero_key_bias():
    eva = {
        "blocks.0.attn.q_bias": torch.ones(4),
        "blocks.0.attn.v_bias": torch.full((4,), 2.0),
        "blocks.0.attn.qkv.weight": torch.zeros(12, 4),
    }
    ours = eva_to_ours(eva, num_blocks=1, grid=2)
    bias = ours["vision_tower.model.encoder.layers.0.self_attn.qkv.bias"]
    assert bias.tolist() == [1.0] * 4 + [0.0] * 4 + [2.0] * 4
    assert ours_to_eva(ours).keys() == eva.keys()


def test_blocks_past_the_used_depth_are_dropped():
    eva = {f"blocks.{i}.norm1.weight": torch.ones(2) for i in range(3)}
    assert sorted(eva_to_ours(eva, num_blocks=2, grid=1)) == [
        "vision_tower.model.encoder.layers.0.layer_norm1.weight",
        "vision_tower.model.encoder.layers.1.layer_norm1.weight",
    ]


def test_position_embedding_resize_keeps_cls_and_is_bicubic():
    pos = torch.randn(1, 1 + 4, 3)
    resized = resize_position_embedding(pos, grid=4)
    assert resized.shape == (1, 17, 3)
    torch.testing.assert_close(resized[:, 0], pos[:, 0])
    grid = pos[:, 1:].reshape(1, 2, 2, 3).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(resized[:, 1:], expected.permute(0, 2, 3, 1).reshape(1, 16, 3))
    assert resize_position_embedding(pos, grid=2) is pos


def test_unexpected_and_missing_keys_are_listed(tiny_release):
    model, _, _ = tiny_release
    original, eva = ours_to_original(model.state_dict())
    with pytest.raises(ConversionError, match=r"unexpected keys .*model\.surprise"):
        original_to_ours({**original, "model.surprise": torch.zeros(1)}, eva, model.config)
    from llamavid.model.convert import check_complete

    partial = original_to_ours(original, eva, model.config)
    del partial["token_generator.key_projector.weight"]
    with pytest.raises(ConversionError, match=r"missing 1 weights: token_generator\.key_projector\.weight"):
        check_complete(model, partial)


@pytest.mark.parametrize(
    ("value", "parsed"), [(None, ("none", None)), ("mean", ("mean", None)), ("grid:4", ("grid", 4))]
)
def test_compress_type_strings(value, parsed):
    assert parse_compress_type(value) == parsed


def test_bad_compress_type_and_bert_type_are_rejected(tiny_release):
    with pytest.raises(ConversionError, match="compress_type"):
        parse_compress_type("grid")
    model, _, _ = tiny_release
    original, eva = ours_to_original(model.state_dict())
    with pytest.raises(ConversionError, match="bert_type 'raw_bert'"):
        build_config({"bert_type": "raw_bert"}, original, eva, 28)


def test_head_counts_that_weights_cannot_tell_must_be_given(tiny_release):
    model, _, _ = tiny_release
    original, eva = ours_to_original(model.state_dict())
    with pytest.raises(ConversionError, match="--vision-heads"):
        build_config({"bert_type": "qformer_pretrain"}, original, eva, 28)


def test_cli_converts_a_release_folder_exactly(tiny_release, tmp_path, image):
    model, processor, root = tiny_release
    out = tmp_path / "converted"
    result = _cli(
        "convert",
        "--model",
        str(root / "llama-vid-tiny"),
        "--processor",
        str(root / "processor"),
        "--eva",
        str(root / "eva_vit_g.pth"),
        "--qformer-vocab",
        str(root / "vocab.txt"),
        "--out",
        str(out),
        "--vision-heads",
        "4",
        "--qformer-heads",
        "4",
    )
    assert result.returncode == 0, result.stderr
    loaded = LlamaVidForConditionalGeneration.from_pretrained(out).eval()
    loaded_processor = LlamaVidProcessor.from_pretrained(out)
    assert (loaded.config.compress, loaded.config.grid_size, loaded.config.pad_to_square) == ("grid", 2, True)
    text = processor.render_chat([("user", "<image>\nWhat colour?")])
    ours = processor(text, media=[image], qformer_text="What colour?")
    theirs = loaded_processor(text, media=[image], qformer_text="What colour?")
    torch.testing.assert_close(ours["input_ids"], theirs["input_ids"])
    torch.testing.assert_close(ours["qformer_input_ids"], theirs["qformer_input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(model(**ours).logits, loaded(**theirs).logits)


def test_cli_errors_are_one_line(tmp_path):
    result = _cli(
        "convert",
        "--model",
        str(tmp_path / "missing"),
        "--processor",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "no config.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_missing_vocab_says_which_file(tiny_release, tmp_path):
    _, _, root = tiny_release
    result = _cli(
        "convert",
        "--model",
        str(root / "llama-vid-tiny"),
        "--processor",
        str(root / "processor"),
        "--out",
        str(tmp_path / "o"),
    )
    assert result.returncode == 2 and "vocab.txt" in result.stderr and "--qformer-vocab" in result.stderr


def _release_copy(root, tmp_path, edit):
    """The tiny release folder with its second shard edited by `edit(state_dict)`."""
    import shutil

    copy = tmp_path / "release"
    shutil.copytree(root / "llama-vid-tiny", copy)
    shard = copy / "pytorch_model-00002-of-00002.bin"
    state = torch.load(shard, weights_only=True)
    edit(state)
    torch.save(state, shard)
    index = json.loads((copy / "pytorch_model.bin.index.json").read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if k in state or "00001" in v}
    index["weight_map"].update(dict.fromkeys(state, shard.name))
    (copy / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    return copy


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda state: state.update({"model.surprise": torch.zeros(1)}), r"unexpected keys .*model\.surprise"),
        (
            lambda state: state.pop("model.vlm_att_ln.weight"),
            r"missing 1 weights: token_generator\.vision_layernorm\.weight",
        ),
        (
            lambda state: state.update({"model.vlm_att_ln.weight": torch.zeros(3)}),
            r"wrong shapes: token_generator\.vision_layernorm\.weight \(3,\)",
        ),
    ],
)
def test_streaming_conversion_refuses_unexpected_missing_and_misshapen_keys(tiny_release, tmp_path, edit, message):
    from llamavid.model.convert import ArchitectureHints, convert_checkpoint

    _, _, root = tiny_release
    folder = _release_copy(root, tmp_path, edit)
    with pytest.raises(ConversionError, match=message):
        convert_checkpoint(
            folder, tmp_path / "out", root / "processor", root / "vocab.txt", root / "eva_vit_g.pth",
            hints=ArchitectureHints(vision_heads=4, qformer_heads=4),
        )
    assert not list((tmp_path / "out").glob("*.safetensors")), "nothing is written before the checks pass"


def test_streaming_conversion_shards_like_save_pretrained(tiny_release, tmp_path):
    """Small shards give save_pretrained's sharded layout (index with total size and parameters), which
    from_pretrained loads to the same weights as one file."""
    from llamavid.model.convert import ArchitectureHints, convert_checkpoint

    model, _, root = tiny_release
    parts = (root / "llama-vid-tiny", root / "processor", root / "vocab.txt", root / "eva_vit_g.pth")
    hints = ArchitectureHints(vision_heads=4, qformer_heads=4)
    convert_checkpoint(*[parts[0], tmp_path / "sharded", *parts[1:]], hints=hints, max_shard_size=20_000)
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in (tmp_path / "sharded").glob("model-*.safetensors"))
    assert len(files) > 2 and set(index["weight_map"].values()) == set(files)
    assert index["metadata"]["total_parameters"] == model.num_parameters()
    loaded = LlamaVidForConditionalGeneration.from_pretrained(tmp_path / "sharded")
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_keep_converts_to_the_dtype_the_release_stores(tiny_release, tmp_path):
    """LLaMA-VID's releases store bfloat16 (and LAVIS's EVA file float16): the default conversion is bfloat16
    throughout, the release's size, and `auto` loads it so; a float32 release stays float32 (the other tests)."""
    from llamavid.inference.loading import load_model
    from llamavid.model.convert import ArchitectureHints, convert_checkpoint

    model, _, root = tiny_release

    def to_bf16(state):
        state.update({k: v.to(torch.bfloat16) for k, v in state.items() if v.is_floating_point()})

    folder = _release_copy(root, tmp_path, to_bf16)
    first = folder / "pytorch_model-00001-of-00002.bin"
    state = torch.load(first, weights_only=True)
    to_bf16(state)
    torch.save(state, first)
    eva = torch.load(root / "eva_vit_g.pth", weights_only=True)
    torch.save({k: v.half() for k, v in eva.items()}, tmp_path / "eva_vit_g.pth")
    out = convert_checkpoint(folder, tmp_path / "out", root / "processor", root / "vocab.txt",
                             tmp_path / "eva_vit_g.pth", hints=ArchitectureHints(vision_heads=4, qformer_heads=4))
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    loaded, _ = load_model(out, device="cpu", dtype="auto")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    for key, value in loaded.state_dict().items():  # the bf16 release's values, exactly
        if value.is_floating_point():
            expected = model.state_dict()[key].to(torch.bfloat16)
            if key.startswith("vision_tower."):  # through LAVIS's float16 first
                expected = model.state_dict()[key].half().to(torch.bfloat16)
            torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=key)
