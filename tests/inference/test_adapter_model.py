"""A model folder that ships only the visual weights and a LoRA adapter on a named base LLM (the demo's format),
and the adapter applied to visual turns only (`config.llm_adapter_visual_only`, routed by `VisualTurnRouting`)."""

import numpy as np
import pytest
import torch

from llamavid.inference.adapter_folder import VisualTurnRouting
from llamavid.inference.loading import ModelLoadError, load_model, save_adapter_model
from llamavid.model.processing import Video
from llamavid.testing import save_llm_folder, tiny_model_and_processor

peft = pytest.importorskip("peft")


@pytest.fixture
def adapted(tmp_path):
    """A tiny model whose LLM (saved as an HF folder, the base) carries a LoRA with non-zero weights."""
    model, processor = tiny_model_and_processor(seed=3)
    base = tmp_path / "base-llm"
    save_llm_folder(model, processor, base)
    model.config.base_llm = str(base)
    model.config.llm_adapter_visual_only = True
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model.language_model = peft.get_peft_model(model.language_model, lora)
    VisualTurnRouting(model)  # what loading an adapter folder attaches
    return model.eval(), processor


def _inputs(processor, rows):
    frames = np.random.default_rng(0).integers(0, 255, (2, 28, 28, 3), dtype=np.uint8)
    texts, media, prompts = [], [], []
    for visual in rows:
        texts.append(processor.render_chat([("user", "<image>\nwhat moves?" if visual else "what moves?")]))
        media.append([Video(frames)] if visual else [])
        prompts.append(["what moves?"] if visual else [])
    return processor(texts, media=media, qformer_text=prompts, padding_side="left")


def _generate(model, inputs):
    return model.generate(**inputs, max_new_tokens=6, do_sample=False, min_new_tokens=6)


def test_text_rows_run_the_base_llm_and_visual_rows_the_adapter(adapted):
    model, processor = adapted
    text = _inputs(processor, [False])
    with torch.no_grad():
        scoped = _generate(model, text)
        with model.language_model.disable_adapter():
            base = _generate(model, text)
        model.config.llm_adapter_visual_only = False
        everywhere = _generate(model, text)
    assert torch.equal(scoped, base)
    assert not torch.equal(scoped, everywhere), "the adapter must change this model's answer"


def test_mixed_batch_rows_each_get_their_own_llm(adapted):
    model, processor = adapted
    with torch.no_grad():
        mixed = _generate(model, _inputs(processor, [True, False]))
        visual = _generate(model, _inputs(processor, [True]))
        text = _generate(model, _inputs(processor, [False]))
    assert torch.equal(mixed[0, -6:], visual[0, -6:])
    assert torch.equal(mixed[1, -6:], text[0, -6:])


def test_adapter_folder_round_trip(adapted, tmp_path):
    model, processor = adapted
    folder = save_adapter_model(model, processor, tmp_path / "demo")
    assert not any("language_model" in k for k in _keys(folder / "visual.safetensors"))
    assert not any((folder / name).exists() for name in ("tokenizer.json", "tokenizer.model")), "the base's own"
    reloaded, reprocessor = load_model(folder, device="cpu", dtype="float32")
    inputs = _inputs(processor, [True, False])
    with torch.no_grad():
        assert torch.equal(_generate(model, inputs), _generate(reloaded, _inputs(reprocessor, [True, False])))
        assert torch.allclose(model(**inputs).logits, reloaded(**inputs).logits, atol=1e-6)  # routed alike


def test_forward_routes_the_rows_as_generate_does(adapted):
    """A text-only row of a plain forward (no cache) runs the base LLM too, so scoring and generating agree."""
    model, processor = adapted
    inputs = _inputs(processor, [True, False])
    with torch.no_grad():
        routed = model(**inputs).logits
        model.config.llm_adapter_visual_only = False
        everywhere = model(**inputs).logits
        with model.language_model.disable_adapter():
            base = model(**inputs).logits
    torch.testing.assert_close(routed[1], base[1])
    torch.testing.assert_close(routed[0], everywhere[0])
    assert not torch.allclose(routed[1], everywhere[1])


def test_adapter_folder_missing_parts_is_a_clear_error(adapted, tmp_path):
    model, processor = adapted
    folder = save_adapter_model(model, processor, tmp_path / "demo")
    (folder / "visual.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="visual.safetensors"):
        load_model(folder, device="cpu")


def test_saving_needs_a_lora_and_a_base_name(tmp_path):
    model, processor = tiny_model_and_processor()
    with pytest.raises(ValueError, match="base_llm"):
        save_adapter_model(model, processor, tmp_path / "x")


def _keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        return list(handle.keys())
