"""LlamaVidForVLLM: our vision tower and visual-token generator (the very modules of
`llamavid.model.modeling`, so a converted folder's weights load as they are and the math exists once) in front of
vLLM's own LLaMA, which brings paged attention, tensor parallelism and RoPE scaling from the text config.

Each image or video item's visual tokens depend on its own Q-Former prompt (`processing`), so the encoder output
of one item is ctx_1, content_1, ctx_2, ... for its frames, exactly the HF model's order. The tower and the
Q-Former are small next to the LLM and are replicated on every tensor-parallel rank.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from vllm.config import VllmConfig
from vllm.model_executor.models.interfaces import SupportsMultiModal, SupportsPP
from vllm.model_executor.models.utils import AutoWeightsLoader, init_vllm_registered_model, maybe_prefix
from vllm.multimodal import MULTIMODAL_REGISTRY

from ...model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER
from ...model.modeling import VisionTower, VisualTokenGenerator
from ...model.visual_path import VisualPath
from .layout import text_architectures
from .processing import (
    PIXEL_KEYS,
    QFORMER_KEYS,
    LlamaVidDummyInputsBuilder,
    LlamaVidMultiModalProcessor,
    LlamaVidProcessingInfo,
)


@MULTIMODAL_REGISTRY.register_processor(
    LlamaVidMultiModalProcessor, info=LlamaVidProcessingInfo, dummy_inputs=LlamaVidDummyInputsBuilder
)
class LlamaVidForVLLM(VisualPath, nn.Module, SupportsMultiModal, SupportsPP):
    """The visual path is the transformers model's own (`VisualPath`, on `vision_tower` and `token_generator`);
    the LLM is vLLM's implementation of the architecture the text config names."""

    packed_modules_mapping = {"qkv_proj": ["q_proj", "k_proj", "v_proj"], "gate_up_proj": ["gate_proj", "up_proj"]}

    @classmethod
    def get_placeholder_str(cls, modality: str, i: int) -> str | None:
        if modality.startswith("image"):
            return IMAGE_PLACEHOLDER
        if modality.startswith("video"):
            return VIDEO_PLACEHOLDER
        raise ValueError(f"LLaMA-VID takes images and videos, not {modality}")

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = vllm_config.model_config.hf_config
        self.config = config
        with self._mark_tower_model(vllm_config, {"image", "video"}):
            self.vision_tower = VisionTower(config.vision_config)
            self.token_generator = VisualTokenGenerator(config)
        with self._mark_language_model(vllm_config):
            self.language_model = init_vllm_registered_model(
                vllm_config=vllm_config,
                hf_config=config.text_config,
                prefix=maybe_prefix(prefix, "language_model"),
                architectures=text_architectures(config.text_config),
            )
        self.make_empty_intermediate_tensors = self.language_model.make_empty_intermediate_tensors
        tokenizer_ids = [config.image_token_id, config.image_token_id + 1]  # <image>, <video> (see export)
        self.configure_mm_token_handling(config.text_config.vocab_size, tokenizer_ids)

    def embed_multimodal(self, **kwargs: object) -> list[torch.Tensor]:
        """One (frames x tokens_per_frame, H) tensor per item, images then videos as vLLM groups them (one
        modality per call)."""
        outputs: list[torch.Tensor] = []
        for modality in [m for m in ("image", "video") if kwargs.get(PIXEL_KEYS[m]) is not None]:
            outputs += self._item_tokens(kwargs[PIXEL_KEYS[modality]], kwargs[QFORMER_KEYS[modality]])
        return outputs

    def _item_tokens(self, pixels, qformer_ids) -> list[torch.Tensor]:
        """M items of one modality: pixels (F_i, 3, S, S) and Q-Former ids (L_i,) each (a list, or one stacked
        tensor when vLLM found equal shapes) -> M tensors (F_i x tokens_per_frame, H). All frames go through the
        tower at once, all (frame, question) pairs through the Q-Former at once."""
        pixels = list(pixels) if isinstance(pixels, (list, tuple)) else list(pixels.unbind(0))
        qformer_ids = list(qformer_ids) if isinstance(qformer_ids, (list, tuple)) else list(qformer_ids.unbind(0))
        frames = [p.shape[0] for p in pixels]
        features = self.get_vision_features(torch.cat(pixels))
        ids = nn.utils.rnn.pad_sequence(qformer_ids, batch_first=True)
        lengths = torch.tensor([len(i) for i in qformer_ids], device=ids.device)
        mask = (torch.arange(ids.shape[1], device=ids.device) < lengths[:, None]).long()
        tokens = self.get_visual_tokens(
            features, ids, mask, media_frame_counts=torch.tensor(frames, device=features.device)
        )
        per_frame = self.config.tokens_per_frame
        return list(tokens.split([f * per_frame for f in frames]))

    def forward(self, input_ids, positions, intermediate_tensors=None, inputs_embeds=None, **kwargs):
        if intermediate_tensors is not None:
            inputs_embeds = None
        return self.language_model.model(input_ids, positions, intermediate_tensors, inputs_embeds=inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.language_model.compute_logits(hidden_states)

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        return AutoWeightsLoader(self).load_weights(weights)


__all__ = ["LlamaVidForVLLM"]
