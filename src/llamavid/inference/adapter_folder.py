"""Model folders that ship the visual weights and a LoRA adapter over a named base LLM, and that adapter's
routing.

Such a folder (small enough to ship in a package: the demo model is one) holds the config naming `base_llm`,
the vision tower and token generator (`visual.safetensors`), the LLM's LoRA adapter (peft, `llm_adapter/`), the
image processor and the Q-Former tokenizer. The LLM, its weights and its tokenizer come from `base_llm`: an HF
folder or a registered LLM source (`llamavid.inference.loading.load_llm`).

With `config.llm_adapter_visual_only` (an adapter taught on visual turns only), `VisualTurnRouting` lets the rows
of a batch without visual placeholders run the base LLM unchanged, so plain questions are answered as the base
model answers them. The choice is made per row when a sequence starts (an empty or no KV cache) and holds while
it is decoded; it is the adapter's business, attached when the folder is loaded, not the model's.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..model.transformers_compat import CACHE_KEY
from .llm_sources import load_llm

VISUAL_FILE = "visual.safetensors"
ADAPTER_DIR = "llm_adapter"
BASE_ROW = "__base__"  # peft's name for "no adapter" in a mixed batch


class VisualTurnRouting:
    """Routes each row of a batch to the LoRA adapter (visual rows) or the base LLM (text-only rows); see the
    module docstring. Works through two forward pre-hooks: one on the LLaMA-VID model sees the placeholders, the
    other hands peft the rows' adapter names."""

    def __init__(self, model):
        self.config = model.config
        self.adapter = model.language_model.active_adapter
        self.row_adapters: list[str] | None = None
        self.handles = [
            model.register_forward_pre_hook(self._choose, with_kwargs=True),
            model.language_model.register_forward_pre_hook(self._apply, with_kwargs=True),
        ]

    def _choose(self, _module, args, kwargs):
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        cache = kwargs.get("cache", kwargs.get(CACHE_KEY))  # generation on transformers < 5.24 passes the latter
        if input_ids is None or (cache is not None and cache.get_seq_length() > 0):
            return None  # no placeholders to look at, or the same sequences decoding on
        visual = (input_ids == self.config.image_token_id).any(dim=1).tolist()
        routed = self.config.llm_adapter_visual_only and not all(visual)
        self.row_adapters = [self.adapter if v else BASE_ROW for v in visual] if routed else None
        return None

    def _apply(self, _module, args, kwargs):
        if self.row_adapters is None:
            return None
        return args, {**kwargs, "adapter_names": self.row_adapters}

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def save_adapter_model(model, processor, folder: str | Path, state_dict: dict | None = None) -> Path:
    """Write `model` (a peft language model over `config.base_llm`) as an adapter folder; `load_adapter_model`
    puts it back together on the base LLM and its tokenizer.

    `state_dict`: the whole state dict a sharded (FSDP, ZeRO-3) trainer gathered, whose tensors stand in for the
    model's own (shards there); None: the model's own."""
    from safetensors.torch import save_file

    if not model.config.base_llm or not hasattr(model.language_model, "peft_config"):
        raise ValueError("save_adapter_model needs config.base_llm and a peft (LoRA) language model")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    state_dict = model.state_dict() if state_dict is None else state_dict
    llm_prefix = "language_model."
    visual = {k: v.detach().cpu().contiguous() for k, v in state_dict.items() if not k.startswith(llm_prefix)}
    save_file(visual, str(folder / VISUAL_FILE))
    # peft picks its adapter's tensors out of the language model's state dict
    llm_state = {k[len(llm_prefix):]: v for k, v in state_dict.items() if k.startswith(llm_prefix)}
    model.language_model.save_pretrained(folder / ADAPTER_DIR, state_dict=llm_state)
    # The LLM's tokenizer comes with the base LLM, as its weights do: only the visual side's processing is saved.
    type(processor)(processor.image_processor, None, processor.qformer_tokenizer, model.config).save_pretrained(folder)
    return folder


def load_adapter_model(path: Path, config):
    """(model, the base LLM's tokenizer) from an adapter folder."""
    from peft import PeftModel
    from safetensors.torch import load_file

    from ..model.modeling import LlamaVidForConditionalGeneration, VisionTower, VisualTokenGenerator

    missing = [name for name in (VISUAL_FILE, ADAPTER_DIR) if not (path / name).exists()]
    if missing:
        raise ModelLoadError(f"{path} names base_llm={config.base_llm!r} but lacks {', '.join(missing)}")
    llm, tokenizer = load_llm(config.base_llm)
    with torch.device("meta"):  # the LLM built here is replaced: do not spend time initialising it
        model = LlamaVidForConditionalGeneration(config)
    model.vision_tower = VisionTower(config.vision_config)
    model.token_generator = VisualTokenGenerator(config)
    model.language_model = PeftModel.from_pretrained(llm, path / ADAPTER_DIR)
    weights = load_file(str(path / VISUAL_FILE))
    missing = [k for k in model.state_dict() if not k.startswith("language_model.") and k not in weights]
    if missing:
        raise ModelLoadError(f"{path / VISUAL_FILE} lacks weights, first: {missing[0]}")
    model.load_state_dict(weights, strict=False)
    if config.llm_adapter_visual_only:
        VisualTurnRouting(model)
    return model, tokenizer


__all__ = ["ADAPTER_DIR", "VISUAL_FILE", "VisualTurnRouting", "load_adapter_model", "save_adapter_model"]
