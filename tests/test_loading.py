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
    with pytest.raises(ModelLoadError, match="needs a CUDA"):
        quantization_config(8, torch.float16, torch.device("cpu"))


def test_quantization_keeps_vision_and_token_generator_unquantized(monkeypatch):
    pytest.importorskip("bitsandbytes")
    config = quantization_config(4, torch.float16, torch.device("cuda"))
    assert {"vision_tower", "token_generator"} <= set(config.llm_int8_skip_modules)


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
