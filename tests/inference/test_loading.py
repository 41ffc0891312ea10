import subprocess
import sys
import threading

import pytest
import torch
from transformers import TextIteratorStreamer

from llamavid.inference.loading import (
    ModelLoadError,
    load_model,
    quantization_config,
    resolve_device,
    resolve_dtype,
)
from llamavid.testing import save_model_folder


@pytest.fixture(scope="module")
def saved(tiny_folder):
    return tiny_folder


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_load_in_each_precision(saved, dtype, image):
    model, processor = load_model(saved, device="cpu", dtype=dtype)
    assert {p.dtype for p in model.parameters()} == {resolve_dtype(dtype, torch.device("cpu"))}
    inputs = processor(processor.render_chat([("user", "<image>\nHi")]), media=[image], qformer_text="Hi")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3


def test_device_map_loads(saved):
    model, _ = load_model(saved, device="cpu", device_map={"": "cpu"})
    assert next(model.parameters()).device.type == "cpu"


def test_auto_device_and_dtype_on_cpu():
    device = resolve_device("auto")
    assert device.type in ("cpu", "cuda", "mps", "xpu")
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    # auto follows the checkpoint's stored precision on CPU too: no float32 copy of bf16 weights
    assert resolve_dtype("auto", torch.device("cpu"), stored=torch.bfloat16) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cpu"), stored="float32") == torch.float32
    assert resolve_dtype("auto", torch.device("cpu"), stored=torch.float16) == torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda"), stored=torch.float16) == torch.float16
    assert resolve_dtype("float32", torch.device("cpu"), stored=torch.bfloat16) == torch.float32
    with pytest.raises(ModelLoadError, match="Unknown dtype 'fp8'"):
        resolve_dtype("fp8", torch.device("cpu"))


def test_quantization_errors_name_what_is_missing(monkeypatch):
    with pytest.raises(ModelLoadError, match="use 4 or 8"):
        quantization_config(3, torch.float16, torch.device("cuda"))
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "bitsandbytes" else real(name)
    )
    with pytest.raises(ModelLoadError, match="bitsandbytes"):
        quantization_config(4, torch.float16, torch.device("cuda"))
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: object() if name == "bitsandbytes" else real(name)
    )
    with pytest.raises(ModelLoadError, match="does not run on mps"):
        quantization_config(8, torch.float16, torch.device("mps"))


def test_quantization_keeps_vision_and_token_generator_unquantized(monkeypatch):
    pytest.importorskip("bitsandbytes")
    config = quantization_config(4, torch.float16, torch.device("cuda"))
    assert {"vision_tower", "token_generator"} <= set(config.llm_int8_skip_modules)


@pytest.fixture(scope="module")
def bf16_folder(tmp_path_factory):
    """A tiny model saved in bfloat16 whose LLM is wide enough for 4-bit blocks (64 values)."""
    from llamavid.testing import tiny_model_and_processor

    wide = dict(hidden_size=128, intermediate_size=256, num_attention_heads=4, num_key_value_heads=4)
    model, processor = tiny_model_and_processor(seed=3, text_overrides=wide)
    folder = tmp_path_factory.mktemp("bf16")
    save_model_folder(model.to(torch.bfloat16), processor, folder)
    return folder


def test_auto_dtype_loads_a_bf16_folder_in_bf16_on_cpu(bf16_folder):
    model, _ = load_model(bf16_folder, device="cpu", dtype="auto")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}


def _last_logits_and_tokens(model, processor):
    inputs = processor(processor.render_chat([("user", "What colour is the square?")]))
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
        out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    return logits, out[0, inputs["input_ids"].shape[1] :]


@pytest.mark.parametrize(("bits", "layer", "min_cosine"), [(8, "Linear8bitLt", 0.999), (4, "Linear4bit", 0.98)])
def test_quantized_llm_on_cpu_answers_and_agrees_with_bf16(bf16_folder, bits, layer, min_cosine):
    """bitsandbytes' CPU layers: the LLM's linears are quantized, the vision tower and token generator stay in the
    compute dtype, and the last position's logits stay within the stated cosine of bf16's (measured on this model:
    8-bit 0.9999, 4-bit 0.991; a random tiny model has near ties, so greedy tokens are not compared)."""
    pytest.importorskip("bitsandbytes")
    reference, processor = load_model(bf16_folder, device="cpu", dtype="bfloat16")
    expected, _ = _last_logits_and_tokens(reference, processor)
    model, processor = load_model(bf16_folder, device="cpu", dtype="auto", bits=bits)
    assert type(model.language_model.model.layers[0].mlp.up_proj).__name__ == layer
    assert {p.dtype for p in model.vision_tower.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.token_generator.parameters()} == {torch.bfloat16}
    logits, tokens = _last_logits_and_tokens(model, processor)
    assert torch.isfinite(logits).all() and tokens.numel() == 4
    assert torch.nn.functional.cosine_similarity(expected, logits, dim=0) >= min_cosine


def test_not_a_model_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="not a llamavid model folder"):
        load_model(tmp_path)


def test_streaming_through_a_transformers_streamer(tiny, image):
    model, processor = tiny
    inputs = processor(processor.render_chat([("user", "<image>\nHi")]), media=[image], qformer_text="Hi")
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    kwargs = dict(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False, streamer=streamer)
    thread = threading.Thread(target=model.generate, kwargs=kwargs)
    thread.start()
    pieces = list(streamer)
    thread.join()
    with torch.no_grad():
        full = model.generate(**inputs, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert "".join(pieces) == processor.decode(full[0, inputs["input_ids"].shape[1] :])


def test_cli_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "llamavid.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "convert" in result.stdout and "demo" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "llamavid.cli", "convert", "--help"], capture_output=True, text=True
    )
    assert "--qformer-vocab" in result.stdout and "--eva" in result.stdout


def test_a_folder_without_its_qformer_tokenizer_is_an_error_not_a_blank_tokenizer(saved, tmp_path):
    import shutil

    from llamavid.model.processing import QFORMER_TOKENIZER_DIR, LlamaVidProcessor

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    for file in (broken / QFORMER_TOKENIZER_DIR).iterdir():
        file.unlink()
    with pytest.raises(ModelLoadError, match="no Q-Former tokenizer"):
        LlamaVidProcessor.from_pretrained(broken)
    assert LlamaVidProcessor.from_pretrained(saved).qformer_tokenizer.vocab_size > 5
