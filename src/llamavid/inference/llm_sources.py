"""The LLM under a LLaMA-VID model, by name: an HF folder or hub name, or a registered LLM source."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..plugins import LLM_SOURCES, load


def load_llm(name: str, dtype: torch.dtype = torch.float32):
    """(causal LM in `dtype`, tokenizer padding right) from an HF folder or hub name, or from an LLM source
    registered under `name` (entry point group `llamavid.llm_sources`; the toy package registers `smollm2`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = None if Path(name).exists() else load(LLM_SOURCES, name)
    if source is not None:
        llm, tokenizer = source()
        llm = llm.to(dtype)
    else:
        try:
            llm = AutoModelForCausalLM.from_pretrained(name, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as error:
            raise ModelLoadError(f"cannot load the LLM {name!r}: {error}") from None
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return llm, tokenizer


__all__ = ["load_llm"]
