"""Loading a converted model for inference: device, precision and 4/8-bit quantization chosen by argument.

Quantization goes through transformers' `BitsAndBytesConfig` and, as in the original, covers the LLM only:
the vision tower and the visual token generator stay in the compute dtype (they are small and precision-
sensitive). Devices are picked by name (cuda, mps, cpu), never through `torch.cuda` calls.

Memory at size: `dtype="auto"` keeps the precision the folder was saved in (bfloat16 for the converted releases),
on a CPU as on a GPU, so a 7B loads memory-mapped at its bf16 size (about 15 GB with the vision tower) instead of
being upcast to float32 (three times that at peak, and about 5x slower on CPU matmuls). bitsandbytes' 4- and 8-bit
layers also run on a CPU (bitsandbytes >= 0.48): they halve or quarter the LLM's memory, at a speed cost there
(4-bit prefill about 8x slower than bf16 on CPU, without bitsandbytes' optional compiled kernels).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import torch

from ..errors import ModelLoadError
from ..model.configuration import LlamaVidConfig
from .adapter_folder import load_adapter_model, save_adapter_model
from .llm_sources import load_llm

logger = logging.getLogger(__name__)

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}
UNQUANTIZED_MODULES = ["vision_tower", "token_generator", "lm_head"]


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks cuda, then mps, then cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.accelerator.is_available():
        return torch.accelerator.current_accelerator()
    return torch.device("cpu")


def resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device, stored: str | torch.dtype | None = None
) -> torch.dtype:
    """`auto` (or None): the `stored` dtype of the checkpoint where the device computes in it, so that loading
    never makes a float32 copy of half-precision weights; without a stored dtype, bfloat16 on accelerators and
    float32 on CPU. float16 weights run in bfloat16 on a CPU (same size; a CPU with bf16 instructions computes
    bf16 fast and fp16 slowly). On a CPU without them bf16 still runs, slower than float32 (see
    `cpu_computes_bf16`), but in half the memory: what lets a 7B load at all on a 24 GB host."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        stored = DTYPES.get(stored, stored) if isinstance(stored, str) else stored
        if stored in (torch.float32, torch.bfloat16):
            return stored
        if stored == torch.float16:
            return torch.bfloat16 if device.type == "cpu" else torch.float16
        return torch.float32 if device.type == "cpu" else torch.bfloat16
    try:
        return DTYPES[dtype]
    except KeyError:
        raise ModelLoadError(f"Unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}") from None


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16). Without them PyTorch computes bf16
    through float32 conversions, several times slower than float32 itself."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    probes = [probe for probe in probes if probe is not None]
    return not probes or any(probe() for probe in probes)  # an older torch without the probes: assume it does


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
    if device.type not in ("cuda", "xpu", "cpu"):
        raise ModelLoadError(
            f"{bits}-bit loading runs on CUDA, XPU or CPU devices; bitsandbytes does not run on {device}"
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


def stored_dtype(config: LlamaVidConfig) -> torch.dtype | str | None:
    """The dtype `save_pretrained` recorded for the weights (None when the folder does not say)."""
    stored = config.dtype
    return None if stored in (None, "auto") else stored


def model_config(path: str | Path) -> tuple[Path, LlamaVidConfig]:
    """(folder, config) of a llamavid folder or hub name, or a `ModelLoadError` saying what the folder is."""
    from ..hub.models import resolve_model

    path = resolve_model(path)
    if not (path / "config.json").is_file():
        raise ModelLoadError(
            f"{path} is not a llamavid model folder (no config.json): give a folder, a hub name such as "
            "YanweiLi/llama-vid-7b-full-224-video-fps-1, or convert a release with `llamavid convert`"
        )
    try:
        return path, LlamaVidConfig.from_pretrained(path)
    except (OSError, ValueError, TypeError) as error:  # a damaged or foreign config.json
        if '"llava"' in (path / "config.json").read_text():
            raise ModelLoadError(
                f"{path} is a checkpoint in the original LLaMA-VID layout: convert it once with "
                f"`llamavid convert --model {path} --out OUT` and load OUT"
            ) from error
        raise ModelLoadError(f"{path}/config.json is not a llamavid config: {error}") from error


def load_model(
    path: str | Path,
    device: str = "auto",
    dtype: str | torch.dtype | None = None,
    bits: int | None = None,
    device_map: str | dict | None = None,
):
    """(model, processor) from a llamavid folder or a hub name (a released checkpoint is downloaded and converted
    once, see `llamavid.hub`), ready for inference."""
    from ..model.modeling import LlamaVidForConditionalGeneration
    from ..model.processing import LlamaVidProcessor

    path, config = model_config(path)
    target = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target, stored=stored_dtype(config))
    if target.type == "cpu" and torch_dtype != torch.float32 and not cpu_computes_bf16():
        logger.warning(
            "this CPU has no bf16 matrix instructions (AMX, AVX512-BF16): %s runs several times slower than "
            "float32 here; --dtype float32 is faster where twice the weights' memory fits", str(torch_dtype)
        )
    if config.base_llm:
        if bits or device_map is not None:
            raise ModelLoadError(f"{path} adds a LoRA adapter to {config.base_llm}: load it without bits/device_map")
        model, tokenizer = load_adapter_model(path, config)
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
    try:
        model = LlamaVidForConditionalGeneration.from_pretrained(path, **kwargs)
    except OSError as error:  # missing or unreadable weight files
        raise ModelLoadError(f"cannot load the weights of {path}: {error}") from error
    if quantization is None and device_map is None:
        model.to(target)
    model.eval()
    return model, LlamaVidProcessor.from_pretrained(path, config=config)


__all__ = [
    "ModelLoadError",
    "load_llm",
    "load_model",
    "model_config",
    "quantization_config",
    "resolve_device",
    "resolve_dtype",
    "save_adapter_model",
]

