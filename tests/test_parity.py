"""Parity with the original LLaMA-VID: convert its checkpoint with our importer and reproduce every output it
recorded. The fixture folder comes from LLAMAVID_REFERENCE_DIR (default ../shared/fixtures/llamavid-reference);
shapes, prompts and sizes are read from its cases.json, never assumed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from llamavid import LlamaVidForConditionalGeneration, LlamaVidProcessor
from llamavid.model.convert import ArchitectureHints, convert_checkpoint

pytestmark = pytest.mark.parity

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "llamavid-reference"
REFERENCE_DIR = Path(os.environ.get("LLAMAVID_REFERENCE_DIR", DEFAULT_DIR))

if not (REFERENCE_DIR / "cases.json").is_file():
    if os.environ.get("CI") or "LLAMAVID_REFERENCE_DIR" in os.environ:
        raise FileNotFoundError(f"no reference fixtures at {REFERENCE_DIR}: parity cannot be checked")
    pytest.skip(f"no reference fixtures at {REFERENCE_DIR}", allow_module_level=True)


@pytest.fixture(scope="module")
def cases():
    return json.loads((REFERENCE_DIR / "cases.json").read_text())


@pytest.fixture(scope="module")
def tensors():
    return load_file(REFERENCE_DIR / "cases.safetensors")


@pytest.fixture(scope="module")
def tolerance(cases):
    return {"atol": cases["tolerance"]["atol"], "rtol": cases["tolerance"]["rtol"]}


def _find(pattern: str) -> Path:
    found = sorted(REFERENCE_DIR.glob(pattern))
    assert found, f"{REFERENCE_DIR} has no {pattern}"
    return found[0]


def _pick(pattern: str, hint: str) -> Path:
    """The file matching `pattern` whose name mentions `hint`, else the first match."""
    return _optional(pattern, hint) or _find(pattern)


def _optional(pattern: str, hint: str) -> Path | None:
    named = [p for p in sorted(REFERENCE_DIR.glob(pattern)) if hint in p.name.lower()]
    return named[0] if named else None


@pytest.fixture(scope="module")
def converted(cases, tmp_path_factory):
    """The reference checkpoint through our importer, loaded back from our own folder."""
    out = tmp_path_factory.mktemp("converted")
    sizes = cases["config"]
    convert_checkpoint(
        model_dir=_find("*/pytorch_model.bin.index.json").parent,
        output_dir=out,
        processor_dir=_find("*/preprocessor_config.json").parent,
        qformer_vocab=_find("*vocab*.txt"),
        eva_path=_pick("*.pth", "eva"),
        instructblip_path=_optional("*.pth", "blip"),
        hints=ArchitectureHints(vision_heads=sizes["vheads"], qformer_heads=sizes["qheads"]),
    )
    model = LlamaVidForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    processor = LlamaVidProcessor.from_pretrained(out)
    return model, processor, out


def _prompt(case: dict, index: int | None = None) -> str:
    return case["prompts"][index] if index is not None else case["prompt"]


def _visual_tokens(
    model, processor, pixels, prompts: list[str], frames_per_media: list[int], segment_media=None
):
    ids, mask = processor.tokenize_qformer(prompts)
    with torch.no_grad():
        features = model.get_vision_features(pixels)
        tokens = model.get_visual_tokens(
            features,
            ids,
            mask,
            media_frame_counts=torch.tensor(frames_per_media),
            segment_media_index=None if segment_media is None else torch.tensor(segment_media),
        )
    return tokens


def _with_compress(model, compress: str, grid_size: int | None):
    """The same weights with another content compression, as the reference's overridden `compress_type`."""
    config = model.config.to_dict()
    config.update(compress=compress, grid_size=grid_size)
    other = LlamaVidForConditionalGeneration(type(model.config).from_dict(config)).eval()
    other.load_state_dict(model.state_dict())
    return other


def test_image_preprocessing_from_raw(converted, tensors, tolerance):
    _, processor, _ = converted
    raw = tensors["image/raw_uint8"]
    image = Image.open(_find("*.png")).convert("RGB")
    np.testing.assert_array_equal(np.asarray(image), raw.numpy())
    torch.testing.assert_close(processor.preprocess(image), tensors["image/pixel_values"], **tolerance)


def test_video_preprocessing_has_no_padding(converted, tensors, tolerance):
    _, processor, _ = converted
    frames = tensors["video/frames_uint8"].numpy()
    torch.testing.assert_close(processor.preprocess(frames), tensors["video/pixel_values"], **tolerance)


def test_vision_features(converted, tensors, tolerance):
    model, _, _ = converted
    with torch.no_grad():
        features = model.get_vision_features(tensors["image/pixel_values"])
    torch.testing.assert_close(features, tensors["image/vision_features"], **tolerance)


@pytest.mark.parametrize("name", ["mean", "none", "grid2"])
def test_image_visual_tokens_per_compression(converted, cases, tensors, tolerance, name):
    model, processor, _ = converted
    key = f"image/visual_tokens_{name}"
    if key not in tensors:
        pytest.skip(f"the reference has no {key}")
    compress, grid = {"mean": ("mean", None), "none": ("none", None), "grid2": ("grid", 2)}[name]
    if (compress, grid) != (model.config.compress, model.config.grid_size):
        model = _with_compress(model, compress, grid)
    tokens = _visual_tokens(
        model, processor, tensors["image/pixel_values"], [_prompt(cases["cases"]["image"])], [1]
    )
    torch.testing.assert_close(tokens, tensors[key].flatten(0, 1), **tolerance)


def test_video_visual_tokens_interleave_context_and_content(converted, cases, tensors, tolerance):
    model, processor, _ = converted
    pixels = tensors["video/pixel_values"]
    tokens = _visual_tokens(model, processor, pixels, [_prompt(cases["cases"]["video"])], [pixels.shape[0]])
    torch.testing.assert_close(tokens, tensors["video/visual_tokens"].flatten(0, 1), **tolerance)


def test_padded_batch_of_two_prompts(converted, cases, tensors, tolerance):
    model, processor, _ = converted
    pixels = tensors["batch/pixel_values"]
    prompts = [_prompt(cases["cases"]["batch"], i) for i in range(pixels.shape[0])]
    tokens = _visual_tokens(model, processor, pixels, prompts, [1] * pixels.shape[0])
    expected = torch.cat([tensors[f"batch/visual_tokens_{i}"].flatten(0, 1) for i in range(pixels.shape[0])])
    torch.testing.assert_close(tokens, expected, **tolerance)


def test_one_image_several_prompts(converted, cases, tensors, tolerance):
    model, processor, _ = converted
    case = cases["cases"]["multiprompt"]
    prompts = case["prompts"]
    tokens = _visual_tokens(
        model, processor, tensors["image/pixel_values"], prompts, [1], segment_media=[0] * len(prompts)
    )
    torch.testing.assert_close(tokens, tensors["multiprompt/visual_tokens"].flatten(0, 1), **tolerance)


def _expand_original_ids(
    model, ids: torch.Tensor, frames: int, values: torch.Tensor | None = None
) -> torch.Tensor:
    """The original's single -200 per visual input -> our run of image-token ids (or, for `values` aligned with
    `ids` such as labels, a run of the ignore index)."""
    count = frames * model.config.tokens_per_frame
    values = ids if values is None else values
    fill = model.config.image_token_id if values is ids else -100
    rows = []
    for id_row, value_row in zip(ids.tolist(), values.tolist(), strict=True):
        expanded = []
        for token, value in zip(id_row, value_row, strict=True):
            expanded += [fill] * count if token == -200 else [value]
        rows.append(expanded)
    return torch.tensor(rows)


def test_forward_logits_and_loss(converted, cases, tensors, tolerance):
    model, processor, _ = converted
    ids = _expand_original_ids(model, tensors["forward/input_ids"], 1)
    labels = _expand_original_ids(model, tensors["forward/input_ids"], 1, tensors["forward/labels"])
    qids, qmask = processor.tokenize_qformer([_prompt(cases["cases"]["forward"])])
    with torch.no_grad():
        out = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            labels=labels,
            pixel_values=tensors["image/pixel_values"],
            qformer_input_ids=qids,
            qformer_attention_mask=qmask,
        )
    torch.testing.assert_close(out.logits, tensors["forward/logits"], **tolerance)
    torch.testing.assert_close(out.loss.reshape(-1), tensors["forward/loss"].reshape(-1), **tolerance)


def test_greedy_generation_with_kv_cache(converted, cases, tensors):
    model, processor, _ = converted
    ids = _expand_original_ids(model, tensors["generate/input_ids"], 1)
    expected = tensors["generate/new_tokens"]
    qids, qmask = processor.tokenize_qformer([_prompt(cases["cases"]["generate"])])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            pixel_values=tensors["image/pixel_values"],
            qformer_input_ids=qids,
            qformer_attention_mask=qmask,
            max_new_tokens=expected.shape[1],
            min_new_tokens=expected.shape[1],
            do_sample=False,
            use_cache=True,
        )
    torch.testing.assert_close(out[:, ids.shape[1] :], expected)


def test_converted_folder_is_safetensors(converted):
    _, _, out = converted
    assert list(out.glob("*.safetensors")), "weights are saved as safetensors"
    assert not list(out.glob("*.bin"))
    assert (out / "preprocessor_config.json").is_file()
    assert (out / "qformer_tokenizer").is_dir()
