"""Configuration of a LLaMA-VID model (Li et al., *LLaMA-VID: An Image is Worth 2 Tokens in LLMs*, 2023).

The config is the single source of truth for shapes and behaviour: the processor and the model both read
`tokens_per_frame` from here, and nothing is keyed on folder names. Differences with the original's
`LlavaConfig`:

* typed token settings (`compress` + `grid_size`) instead of the `"grid:N"` / `bert_type` strings;
* the vision tower and the Q-Former are described by transformers' InstructBLIP sub-configs, so a converted
  checkpoint needs no side files (`eva_vit_g.pth`, `bert-base-uncased`) at load time;
* the LLM placeholder is a token id just past the LLM vocabulary (`image_token_id`), never embedded.
"""

from __future__ import annotations

import math
from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.instructblip.configuration_instructblip import (
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
)

from ..errors import LlamaVidError
from .transformers_compat import SubConfigSpec

COMPRESS_MODES = ("none", "mean", "grid")

#: The LLM a `text_config` without a `model_type` describes (the releases' Vicuna is a LLaMA).
DEFAULT_TEXT_MODEL_TYPE = "llama"

# Each sub-config's class; `AutoConfig` picks the LLM's from its `model_type`.
_SUB_CONFIG_CLASSES = {
    "vision_config": InstructBlipVisionConfig,
    "qformer_config": InstructBlipQFormerConfig,
    "text_config": AutoConfig,
}


class ConfigError(LlamaVidError, ValueError):
    """A config value that cannot describe a model (from a config.json or a recipe's `model.config`)."""


PROJECTOR_TYPES = ("linear", "mlp2x_gelu", "identity")


@strict
class LlamaVidConfig(PreTrainedConfig):
    r"""
    vision_config (`dict` or `InstructBlipVisionConfig`):
        The EVA-ViT-G tower (39 blocks as used by BLIP-2 / LLaMA-VID, width 1408, patch 14).
    qformer_config (`dict` or `InstructBlipQFormerConfig`):
        The instruction-aware Q-Former (BERT-base + cross-attention every 2nd layer). `vocab_size` includes `[DEC]`.
    text_config (`dict` or `PreTrainedConfig`):
        The LLM (LLaMA / Vicuna for the released models), any `AutoModelForCausalLM` architecture.
    num_query (`int`):
        Learned Q-Former queries (32 in the releases).
    compress (`"none" | "mean" | "grid"`):
        How patch features become content tokens: all patches, their mean (1 token), or a `grid_size`² grid.
    grid_size (`int`):
        Grid side for `compress="grid"`; must be > 1 and at most the patch grid side.
    pad_to_square (`bool`):
        Pad images to a square with the processor's mean colour before resizing (the releases' `"pad"`).
    chat_template (`str`):
        Name of the conversation template the model was trained with (see `llamavid.model.chat_templates`).
    qformer_layernorm (`bool`):
        Apply InstructBLIP's `ln_vision` LayerNorm to the features the Q-Former cross-attends to.
    projector_type (`str`):
        Content-token projector: `mlp2x_gelu` (releases), `linear` or `identity`.
    image_token_id (`int`):
        Id of the placeholder token in `input_ids`; defaults to the LLM vocabulary size (never embedded).
    qformer_max_length (`int`):
        Q-Former prompt length in BERT tokens; longer prompts keep their end (left truncation).
    qformer_chunk_size (`int`):
        Frames (and their frame-prompt pairs) per chunk of the question-dependent stage: its memory beyond the
        features is one chunk's, whatever the video's length, without changing results (64 at the release widths:
        about 0.3 GB in bf16).
    max_sequence_length (`int`):
        Context the model was trained for (`max_token` of the original config).
    video_fps (`float`):
        Frames per second the video models were trained at.
    base_llm (`str`, *optional*):
        Where the LLM's weights come from when the folder holds only the visual weights and a LoRA adapter
        (`llm_adapter/`): an HF folder or hub name, or the name of a registered LLM source (`llamavid.plugins`).
    llm_adapter_visual_only (`bool`):
        Apply that adapter only to conversations with visual input; text-only ones get the base LLM unchanged.
    """

    model_type = "llamavid"
    # transformers >= 5.20 serializes a sub-config as a diff against the defaults its spec declares (5.20 takes
    # only specs, later versions also bare classes); 5.16-5.19 know only a class map (and diff against a
    # default instance).
    if SubConfigSpec is not None:
        sub_configs_defaults = {
            "vision_config": SubConfigSpec(config_class=InstructBlipVisionConfig),
            "qformer_config": SubConfigSpec(config_class=InstructBlipQFormerConfig),
            "text_config": SubConfigSpec(config_class=AutoConfig, model_type=DEFAULT_TEXT_MODEL_TYPE),
        }
    else:
        sub_configs = dict(_SUB_CONFIG_CLASSES)

    vision_config: dict | PreTrainedConfig | None = None
    qformer_config: dict | PreTrainedConfig | None = None
    text_config: dict | PreTrainedConfig | None = None
    num_query: int = 32
    compress: Literal["none", "mean", "grid"] = "mean"
    grid_size: int | None = None
    pad_to_square: bool = True
    chat_template: str = "vicuna_v1"
    qformer_layernorm: bool = True
    projector_type: Literal["linear", "mlp2x_gelu", "identity"] = "mlp2x_gelu"
    image_token_id: int | None = None
    qformer_max_length: int = 256
    qformer_chunk_size: int = 64
    max_sequence_length: int = 2048
    video_fps: float = 1.0
    base_llm: str | None = None
    llm_adapter_visual_only: bool = False
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        # Built here on every transformers version (newer ones then pass the configs through), so a folder
        # gives the same sub-configs, and a bad one the same error, whichever version loads it.
        self._build_sub_configs()
        super().__post_init__(**kwargs)
        # The Q-Former cross-attends to vision features: the two widths are one fact, kept in one place.
        self.qformer_config.encoder_hidden_size = self.vision_config.hidden_size
        if self.image_token_id is None:
            self.image_token_id = self.text_config.vocab_size
        self._check()

    def _build_sub_configs(self) -> None:
        """A config passes through, a dict (or nothing) builds the declared class, and the LLM's class comes
        from its dict's `model_type` (LLaMA when absent): the rules of transformers' `SubConfigSpec`."""
        for key, config_class in self.sub_configs.items():
            value = getattr(self, key)
            if isinstance(value, PreTrainedConfig):
                continue
            if value is not None and not isinstance(value, dict):
                raise ConfigError(f"LlamaVidConfig.{key}: must be a dict or a config, got {type(value).__name__}")
            value = {} if value is None else value
            if config_class is AutoConfig:
                model_type = value.get("model_type", DEFAULT_TEXT_MODEL_TYPE)
                if model_type not in CONFIG_MAPPING:
                    raise ConfigError(f"LlamaVidConfig.{key}: unknown model_type {model_type!r}")
                config_class = CONFIG_MAPPING[model_type]
            setattr(self, key, config_class(**value))

    def _check(self) -> None:
        def fail(field: str, problem: str) -> None:
            raise ConfigError(f"LlamaVidConfig.{field}: {problem}")

        if self.compress not in COMPRESS_MODES:
            fail("compress", f"{self.compress!r} is not one of {', '.join(COMPRESS_MODES)}")
        if self.projector_type not in PROJECTOR_TYPES:
            fail("projector_type", f"{self.projector_type!r} is not one of {', '.join(PROJECTOR_TYPES)}")
        if self.num_query < 1:
            fail("num_query", f"must be at least 1, got {self.num_query}")
        side = self.patch_grid_side
        if self.compress == "grid":
            if self.grid_size is None or self.grid_size < 2:
                fail("grid_size", f"compress='grid' needs grid_size >= 2, got {self.grid_size}")
            if self.grid_size > side:
                fail("grid_size", f"{self.grid_size} exceeds the {side}x{side} patch grid")
        elif self.grid_size is not None:
            fail("grid_size", f"only used with compress='grid' (compress is {self.compress!r})")
        if (
            self.projector_type == "identity"
            and self.vision_config.hidden_size != self.text_config.hidden_size
        ):
            fail("projector_type", "identity needs equal vision and text widths")
        if self.qformer_max_length < 3:
            fail("qformer_max_length", f"must leave room for [CLS] and [SEP], got {self.qformer_max_length}")
        if self.qformer_chunk_size < 1:
            fail("qformer_chunk_size", f"must be at least 1, got {self.qformer_chunk_size}")
        if self.video_fps <= 0:
            fail("video_fps", f"must be positive, got {self.video_fps}")
        if 0 <= self.image_token_id < self.text_config.vocab_size:
            fail(
                "image_token_id",
                f"{self.image_token_id} is inside the LLM vocabulary (size {self.text_config.vocab_size}): "
                "the placeholder must not collide with a real token",
            )

    @property
    def image_size(self) -> int:
        size = self.vision_config.image_size
        return size if isinstance(size, int) else int(size[0])

    @property
    def patch_size(self) -> int:
        size = self.vision_config.patch_size
        return size if isinstance(size, int) else int(size[0])

    @property
    def num_patches(self) -> int:
        """Patch tokens per frame (CLS excluded): 256 at 224 px, 576 at 336 px."""
        return (self.image_size // self.patch_size) ** 2

    @property
    def patch_grid_side(self) -> int:
        return math.isqrt(self.num_patches)

    @property
    def grid_stride(self) -> int:
        """Pooling kernel and stride of `compress="grid"`; floored like the original, so border patches of a
        non-divisible grid are dropped."""
        return self.patch_grid_side // self.grid_size

    @property
    def content_tokens_per_frame(self) -> int:
        if self.compress == "mean":
            return 1
        if self.compress == "grid":
            return (self.patch_grid_side // self.grid_stride) ** 2
        return self.num_patches

    @property
    def tokens_per_frame(self) -> int:
        """One context token plus the content tokens: the one place this count is derived."""
        return 1 + self.content_tokens_per_frame

    @property
    def context_length(self) -> int:
        """Positions the LLM can attend over: its position table, stretched by linear RoPE scaling (the
        long-video release: 4096 x 16)."""
        text = self.text_config
        scaling = getattr(text, "rope_parameters", None) or {}
        factor = scaling.get("factor", 1.0) if scaling.get("rope_type") == "linear" else 1.0
        return int(text.max_position_embeddings * factor)


__all__ = ["COMPRESS_MODES", "ConfigError", "LlamaVidConfig", "PROJECTOR_TYPES"]
