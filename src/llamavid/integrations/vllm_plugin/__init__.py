"""LLaMA-VID on vLLM, as an out-of-tree model plugin.

vLLM calls `register` (the `vllm.general_plugins` entry point in pyproject.toml) in every process it starts: the
API server, the engine core and each worker. It makes `model_type: llamavid` known to transformers' AutoConfig,
registers `LlamaVidForConditionalGeneration` with vLLM's model registry (by name, so the model module and torch
work load only where a model is built) and adds the `llamavid` video loader. Nothing here runs without vLLM.

Parts: `layout` (each placeholder's Q-Former prompt from a rendered prompt), `processing` (vLLM's multimodal
processor: pixels, Q-Former ids, the question-aware hash), `model` (our vision tower and visual-token generator
in front of vLLM's own LLaMA), `video` (frames sampled by our rule), `export` (a llamavid folder -> what vLLM
reads).
"""

from __future__ import annotations

ARCHITECTURE = "LlamaVidForConditionalGeneration"
VIDEO_LOADER = "llamavid"
#: What `export` writes as the video processor type: vLLM picks the video loader registered for it.
VIDEO_PROCESSOR_TYPE = "LlamaVidVideoProcessor"


def register() -> None:
    """vLLM's plugin hook; calling it again re-registers the same things."""
    from vllm import ModelRegistry

    from ...model import modeling  # noqa: F401  (registers the llamavid config with AutoConfig)
    from . import video  # noqa: F401  (registers the video loader)

    ModelRegistry.register_model(ARCHITECTURE, f"{__name__}.model:LlamaVidForVLLM")


__all__ = ["ARCHITECTURE", "VIDEO_LOADER", "VIDEO_PROCESSOR_TYPE", "register"]
