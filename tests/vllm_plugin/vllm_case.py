"""Shared pieces of the vLLM tests: the tiny model every test serves (head size 32, the CPU attention backend's
smallest), exported once, and references computed by the HF model's `generate`."""

from __future__ import annotations

import numpy as np
import torch

from llamavid.integrations.vllm_plugin.export import export_for_vllm
from llamavid.testing import save_model_folder, tiny_model_and_processor

MAX_NEW_TOKENS = 8
GREEDY = {
    "max_new_tokens": MAX_NEW_TOKENS, "min_new_tokens": MAX_NEW_TOKENS, "do_sample": False,
    "output_logits": True, "return_dict_in_generate": True,
}
# hidden 64 over 2 heads: head size 32. Linear RoPE scaling (the long-video release's kind, x16 there): every
# parity test then shows that vLLM's LLaMA takes it from the text config as our model does.
TEXT_SIZES = {
    "hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 128,
    "rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
}


def build_model(directory):
    """(HF model, processor, exported vLLM folder) of the tiny random model, written under `directory`."""
    model, processor = tiny_model_and_processor(text_overrides=TEXT_SIZES)
    source = directory / "llamavid"
    save_model_folder(model, processor, source)
    return model, processor, export_for_vllm(source, directory / "vllm")


def random_video(seed: int, frames: int = 3, size: int = 28) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, size, size, 3), dtype=np.uint8)


def reference(model, processor, messages, media=(), qformer_text=None):
    """Greedy tokens and their log-probabilities from `model.generate`, the prompt rendered with the model's
    template. `qformer_text`: each placeholder's Q-Former prompt (our engine gives each its user turn's text)."""
    prompt = processor.render_chat(messages)
    inputs = processor(prompt, media=list(media) or None, qformer_text=qformer_text if media else None)
    with torch.no_grad():
        out = model.generate(**inputs, **GREEDY)
    tokens = out.sequences[0, inputs["input_ids"].shape[1] :].tolist()
    logprobs = [torch.log_softmax(step[0].float(), -1)[t].item() for step, t in zip(out.logits, tokens, strict=True)]
    return tokens, logprobs


def vllm_answer(output):
    """(tokens, log-probabilities) of one vLLM RequestOutput."""
    completion = output.outputs[0]
    logprobs = [step[token].logprob for step, token in zip(completion.logprobs, completion.token_ids, strict=True)]
    return list(completion.token_ids), logprobs
