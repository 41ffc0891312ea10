"""LLaMA-VID model: every image or video frame becomes one context token and a few content tokens.

Reads parts to whole: vision tower -> visual token generator (Q-Former, context and content tokens) ->
`LlamaVidForConditionalGeneration` (splice into the LLM input, forward, generate).

Differences with the original implementation (numerically identical outputs, see tests/test_parity.py):

* The Q-Former and token generation run over all (frame, prompt) pairs of a batch, streamed over chunks of
  `config.qformer_chunk_size` frames (bounded memory for an hour-long movie), instead of one pass per sample
  and per prompt. Key projections and content
  tokens depend only on the frame, so they are computed once per frame, not once per prompt.
* The processor expands each placeholder into exactly `frames x tokens_per_frame` placeholder ids, so the
  splice is one `masked_scatter` (no per-sample Python loop), batched generation with left padding works, and
  text-only samples need no special path.
* Long-video features without a CLS token are flagged explicitly (`vision_features_include_cls=False`) rather
  than detected from the token count or the feature width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    GenerationMixin,
    PreTrainedModel,
)
from transformers.modeling_outputs import ModelOutput
from transformers.models.instructblip.modeling_instructblip import (
    InstructBlipQFormerModel,
    InstructBlipVisionModel,
)

from .configuration import LlamaVidConfig
from .processing import LlamaVidProcessor
from .transformers_compat import CACHE_KEY
from .visual_path import VisualPath

VISUAL_INPUTS = (
    "visual_tokens",
    "pixel_values",
    "vision_features",
    "vision_features_include_cls",
    "media_frame_counts",
    "qformer_input_ids",
    "qformer_attention_mask",
    "segment_media_index",
)


class VisionTower(nn.Module):
    """EVA-ViT-G as BLIP-2 uses it, on transformers' InstructBLIP vision model.

    LLaMA-VID takes the output of the last built block (the 39th of EVA-CLIP-g's 40) with the CLS token kept and
    without the final LayerNorm, so the post-layernorm is replaced by the identity.
    """

    def __init__(self, config):
        super().__init__()
        self.model = InstructBlipVisionModel(config)
        self.model.post_layernorm = nn.Identity()

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # (F, 3, S, S) -> (F, 1 + N, V)
        dtype = self.model.embeddings.patch_embedding.weight.dtype
        return self.model(pixel_values=pixel_values.to(dtype)).last_hidden_state


def build_content_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """The original's `mm_projector`; `mlp2x_gelu` keeps indices 0 and 2 so the weight names line up."""
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    return nn.Identity()


class VisualTokenGenerator(nn.Module):
    """Turns vision features and Q-Former prompts into LLM tokens (paper section 3.1).

    For each (frame, prompt) pair:

    * context token: the Q-Former reads the prompt with its learned queries, cross-attending to the frame; the
      projected queries attend over the key-projected patches, the attention-weighted *raw* patch features are
      averaged over the queries and projected to the LLM width;
    * content tokens: the patches pooled (`none` | `mean` | `grid`) and passed through the content projector.
    """

    def __init__(self, config: LlamaVidConfig):
        super().__init__()
        self.config = config
        vision_dim = config.vision_config.hidden_size
        qformer_dim = config.qformer_config.hidden_size
        text_dim = config.text_config.hidden_size
        self.qformer = InstructBlipQFormerModel(config.qformer_config)
        self.query_tokens = nn.Parameter(torch.zeros(1, config.num_query, qformer_dim))
        self.vision_layernorm = (
            nn.LayerNorm(vision_dim, eps=1e-5) if config.qformer_layernorm else nn.Identity()
        )
        self.query_projector = nn.Linear(qformer_dim, vision_dim)
        self.key_projector = nn.Linear(vision_dim, vision_dim)
        self.context_projector = nn.Linear(vision_dim, text_dim)
        self.content_projector = build_content_projector(config.projector_type, vision_dim, text_dim)

    def forward(
        self,
        vision_features: torch.Tensor,
        qformer_input_ids: torch.LongTensor,
        qformer_attention_mask: torch.Tensor,
        row_frames: torch.LongTensor,
        row_prompts: torch.LongTensor,
        include_cls: bool = True,
    ) -> torch.Tensor:
        """Visual tokens for each row = (frame, prompt) pair.

        vision_features: (F, T, V) with T = 1 + N when `include_cls`, else N, in any dtype (a movie's float16 as
        stored): each chunk of frames is cast to the weights' dtype on its own.
        qformer_input_ids / qformer_attention_mask: (P, L).
        row_frames, row_prompts: (R,) indices into the frames and the prompts.
        Returns (R, tokens_per_frame, H): the context token, then the content tokens.

        Streams over the frames `config.qformer_chunk_size` at a time: the cast features, the key projections, the
        pooled patches (and the float32 a mean reduces in) and the Q-Former's activations exist for one chunk only,
        so the memory beyond the features and the tokens does not grow with the number of frames. Keys and content
        tokens depend only on the frame: computed once per frame, shared by every prompt that shows it.
        """
        chunk = self.config.qformer_chunk_size
        dtype = self.query_tokens.dtype
        tokens = None
        for start in range(0, vision_features.shape[0], chunk):
            stop = min(start + chunk, vision_features.shape[0])
            rows = ((row_frames >= start) & (row_frames < stop)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            features = vision_features[start:stop].to(dtype)  # (Fc, T, V): this chunk's copy in the weights' dtype
            patches = features[:, 1:] if include_cls else features  # (Fc, N, V)
            keys = self.key_projector(patches)  # (Fc, N, V)
            content = self.content_tokens(patches)  # (Fc, n, H)
            for part in rows.split(chunk):
                frames = row_frames[part] - start
                context = self.context_tokens(
                    features, patches, keys, qformer_input_ids, qformer_attention_mask, frames, row_prompts[part]
                )  # (Rc, 1, H)
                if tokens is None:
                    tokens = context.new_empty(row_frames.shape[0], 1 + content.shape[1], context.shape[-1])
                tokens[part] = torch.cat([context, content[frames].to(context.dtype)], dim=1)
        if tokens is None:  # no rows
            width = self.context_projector.out_features
            tokens = vision_features.new_empty(0, self.config.tokens_per_frame, width, dtype=dtype)
        return tokens

    def context_tokens(self, features, patches, keys, input_ids, attention_mask, frames, prompts):
        """One context token per row of a chunk: (Rc,) rows -> (Rc, 1, H)."""
        weights = self.context_attention(features[frames], keys[frames], input_ids[prompts], attention_mask[prompts])
        attended = weights @ patches[frames]  # (Rc, Q, V): weights over the raw patches
        return self.context_projector(attended.mean(dim=1, keepdim=True))  # (Rc, 1, H)

    def context_attention(self, features, keys, input_ids, attention_mask) -> torch.Tensor:
        """Where each text-aware query looks: (Rc, T, V) features, (Rc, N, V) keys -> (Rc, Q, N) weights."""
        text_queries = self.query_projector(self.encode_queries(features, input_ids, attention_mask))
        scores = text_queries @ keys.transpose(1, 2) / keys.shape[-1] ** 0.5  # (Rc, Q, N)
        return scores.softmax(dim=-1)

    def encode_queries(self, features, input_ids, attention_mask) -> torch.Tensor:
        """InstructBLIP Q-Former in encoder mode over [queries; prompt]: (Rc, T, V) -> (Rc, Q, Dq)."""
        num_rows = features.shape[0]
        queries = self.query_tokens.expand(num_rows, -1, -1)
        query_mask = attention_mask.new_ones(num_rows, queries.shape[1])
        visual = self.vision_layernorm(features)
        output = self.qformer(
            input_ids=input_ids,
            attention_mask=torch.cat([query_mask, attention_mask], dim=1),
            query_embeds=queries,
            encoder_hidden_states=visual.to(queries.dtype),
            encoder_attention_mask=attention_mask.new_ones(visual.shape[:2]),
        ).last_hidden_state
        return output[:, : queries.shape[1]]

    def content_tokens(self, patches: torch.Tensor) -> torch.Tensor:
        """Pool the patches per `config.compress` and project: (F, N, V) -> (F, n, H)."""
        if self.config.compress == "mean":
            pooled = patches.mean(dim=1, keepdim=True)
        elif self.config.compress == "grid":
            side = self.config.patch_grid_side
            stride = self.config.grid_stride
            grid = patches.unflatten(1, (side, side)).permute(0, 3, 1, 2)  # (F, V, side, side)
            pooled = F.avg_pool2d(grid, kernel_size=stride, stride=stride).flatten(2).transpose(1, 2)
        else:
            pooled = patches
        return self.content_projector(pooled)


@dataclass
class LlamaVidOutput(ModelOutput):
    """Language-model output plus the visual tokens that were spliced in (one row per visual segment token)."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    # Named as the installed transformers names it: its generation loop reads the KV cache back by that name.
    if CACHE_KEY == "cache":
        cache: object | None = None
    else:
        past_key_values: object | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None
    visual_tokens: torch.FloatTensor | None = None


class LlamaVidPreTrainedModel(PreTrainedModel):
    config_class = LlamaVidConfig
    config: LlamaVidConfig
    base_model_prefix = "llamavid"
    input_modalities = ("image", "video", "text")
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True
    _no_split_modules = ["InstructBlipEncoderLayer", "InstructBlipQFormerLayer", "VisualTokenGenerator"]
    _skip_keys_device_placement = [CACHE_KEY]


class LlamaVidForConditionalGeneration(VisualPath, LlamaVidPreTrainedModel, GenerationMixin):
    """LLaMA-VID: vision tower + visual token generator + causal LLM.

    Inputs (named dimensions: B batch, L text length, F frames in the batch, M media items, S visual segments,
    Lq Q-Former prompt length):

    * `input_ids` (B, L): text with `config.image_token_id` repeated `frames x tokens_per_frame` times at each
      visual segment (the processor does this).
    * `pixel_values` (F, 3, H, W) or `vision_features` (F, T, V): all frames of all media items, in media order.
    * `media_frame_counts` (M,): frames of each media item (default: one frame per item).
    * `qformer_input_ids`, `qformer_attention_mask` (S, Lq): the Q-Former prompt of each visual segment.
    * `segment_media_index` (S,): the media item each segment shows (default: segment i shows item i).

    Segments are filled in reading order (sample by sample, left to right), so several segments may show the same
    media item with different prompts (multi-turn training) and samples may have no media at all.
    """

    def __init__(self, config: LlamaVidConfig):
        super().__init__(config)
        self.vision_tower = VisionTower(config.vision_config)
        self.token_generator = VisualTokenGenerator(config)
        self.language_model = AutoModelForCausalLM.from_config(config.text_config)
        self._no_split_modules = list(self._no_split_modules) + list(
            self.language_model._no_split_modules or []
        )
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.language_model.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module:
        return self.language_model.get_output_embeddings()

    def get_decoder(self):
        return self.language_model.get_decoder()

    # -- splice ----------------------------------------------------------------------------------------------

    def embed_inputs(self, input_ids: torch.LongTensor, visual_tokens: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with the placeholder positions replaced, in reading order, by the visual tokens."""
        placeholder = input_ids == self.config.image_token_id
        embeddings = self.get_input_embeddings()(input_ids.masked_fill(placeholder, 0))
        num_placeholders = int(placeholder.sum())
        num_tokens = 0 if visual_tokens is None else visual_tokens.shape[0]
        if num_placeholders != num_tokens:
            raise ValueError(
                f"The text has {num_placeholders} visual placeholder tokens but the media give {num_tokens} "
                f"visual tokens ({self.config.tokens_per_frame} per frame and prompt). Let the processor expand "
                "the placeholders, and pass one Q-Former prompt per placeholder segment."
            )
        if num_tokens == 0:
            return embeddings
        mask = placeholder.unsqueeze(-1).expand_as(embeddings)
        return embeddings.masked_scatter(mask, visual_tokens.to(embeddings.device, embeddings.dtype))

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        vision_features: torch.Tensor | None = None,
        vision_features_include_cls: bool = True,
        media_frame_counts: torch.LongTensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        segment_media_index: torch.LongTensor | None = None,
        visual_tokens: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs,
    ) -> LlamaVidOutput:
        """Embed text -> encode visuals -> scatter into the placeholders -> LLM (-> loss on shifted labels).

        `labels` use -100 wherever no loss is wanted; placeholder positions are always ignored.
        `visual_tokens` (sum of segment tokens, H), when given, are spliced as they are (a caller that kept
        them from an earlier turn); the other visual inputs are then not used.
        """
        if inputs_embeds is None:
            if visual_tokens is None and (pixel_values is not None or vision_features is not None):
                visual_tokens = self.visual_tokens_from_inputs(
                    dict(
                        pixel_values=pixel_values,
                        vision_features=vision_features,
                        vision_features_include_cls=vision_features_include_cls,
                        media_frame_counts=media_frame_counts,
                        qformer_input_ids=qformer_input_ids,
                        qformer_attention_mask=qformer_attention_mask,
                        segment_media_index=segment_media_index,
                    )
                )
            inputs_embeds = self.embed_inputs(input_ids, visual_tokens)
        if labels is not None and input_ids is not None:
            labels = labels.masked_fill(input_ids == self.config.image_token_id, -100)
        if CACHE_KEY in kwargs:  # transformers < 5.24 generates with `past_key_values`
            cache = kwargs.pop(CACHE_KEY)
        kwargs[CACHE_KEY] = cache
        outputs = self.language_model(
            attention_mask=attention_mask,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            labels=labels,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        return LlamaVidOutput(
            loss=outputs.loss,
            logits=outputs.logits,
            **{CACHE_KEY: getattr(outputs, CACHE_KEY)},
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            visual_tokens=visual_tokens,
        )

    def prefill(self, inputs: dict, cache, chunk_size: int) -> dict:
        """Run the prompt of `inputs` (model inputs of a batch, left-padded) but its last position through the LLM
        `chunk_size` positions at a time, filling `cache`; returns the inputs that `generate` continues from (the
        text and attention mask, no visual inputs: the cache holds them).

        One pass over a long prompt keeps activations for every position at once (the MLP's alone are
        positions x intermediate width); chunks bound them by `chunk_size`, while the cache, the spliced
        embeddings and the mask grow with the prompt as they do in one pass. Equal to one pass within float
        tolerance. The last position is left to `generate`, whose first step then yields the first token.
        """
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        visual_tokens = inputs.get("visual_tokens")
        if visual_tokens is None:
            visual_tokens = self.visual_tokens_from_inputs(inputs)
        if (input_ids[:, -1] == self.config.image_token_id).any():
            raise ValueError("a prompt cannot end with a visual placeholder")
        embeddings = self.embed_inputs(input_ids[:, :-1], visual_tokens)  # (B, L - 1, H)
        del visual_tokens
        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        for start in range(0, embeddings.shape[1], chunk_size):
            stop = min(start + chunk_size, embeddings.shape[1])
            self.language_model(
                inputs_embeds=embeddings[:, start:stop],
                attention_mask=attention_mask[:, :stop],
                position_ids=position_ids[:, start:stop],
                use_cache=True,
                logits_to_keep=1,
                **{CACHE_KEY: cache},
            )
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def prepare_inputs_for_generation(self, *args, is_first_iteration: bool | None = False, **kwargs):
        """Visual inputs belong to the prompt: after the prefill the KV cache holds them, so drop them."""
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration and kwargs.get("use_cache", True):
            for key in VISUAL_INPUTS:
                inputs.pop(key, None)
        return inputs


AutoConfig.register(LlamaVidConfig.model_type, LlamaVidConfig, exist_ok=True)
AutoModelForImageTextToText.register(LlamaVidConfig, LlamaVidForConditionalGeneration, exist_ok=True)
AutoProcessor.register(LlamaVidConfig, LlamaVidProcessor, exist_ok=True)

__all__ = [
    "LlamaVidForConditionalGeneration",
    "LlamaVidOutput",
    "LlamaVidPreTrainedModel",
    "VisionTower",
    "VisualTokenGenerator",
]
