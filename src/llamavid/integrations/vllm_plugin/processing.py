"""vLLM's multimodal processor for LLaMA-VID: media -> pixels, each item's question -> Q-Former ids, placeholder
-> frames x tokens_per_frame visual positions.

The question matters: LLaMA-VID's context token depends on the Q-Former prompt, but vLLM hashes an item over
its media alone and keys three caches on that hash (processor, encoder, prefix), so a second question about the
same video would get the first one's visual tokens. `apply` finds each placeholder's question in the prompt
(`layout.placeholder_prompts`), hands it on as an internal processor option, and `_get_mm_hashes` mixes it into
that item's hash: the caches then reuse exactly what is the same (same media, same question; the text before).
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import lru_cache

from transformers import BatchFeature
from vllm.multimodal.hasher import MultiModalHasher
from vllm.multimodal.inputs import MultiModalFieldConfig
from vllm.multimodal.parse import VideoProcessorItems
from vllm.multimodal.processing import (
    BaseDummyInputsBuilder,
    BaseMultiModalProcessor,
    BaseProcessingInfo,
    PromptReplacement,
)

from ...model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template
from ...model.configuration import LlamaVidConfig
from ...model.processing import PLACEHOLDER_PATTERN, LlamaVidProcessor, whole_text_prompt
from .layout import placeholder_prompts, reshow_media

#: The internal processor option carrying {modality: [Q-Former prompt of each item]}; never hashed as a whole.
QFORMER_TEXT = "llamavid_qformer_text"
PLACEHOLDERS = {"image": IMAGE_PLACEHOLDER, "video": VIDEO_PLACEHOLDER}
MODALITY_OF = {text: modality for modality, text in PLACEHOLDERS.items()}
#: vLLM's default `num_frames` media option, our `max_frames` (see `video`).
DEFAULT_MAX_FRAMES = 32
PIXEL_KEYS = {"image": "pixel_values", "video": "pixel_values_videos"}
QFORMER_KEYS = {"image": "image_qformer_ids", "video": "video_qformer_ids"}


@lru_cache(maxsize=4)
def _processor(folder: str) -> LlamaVidProcessor:
    return LlamaVidProcessor.from_pretrained(folder)


class LlamaVidProcessingInfo(BaseProcessingInfo):
    def get_hf_config(self) -> LlamaVidConfig:
        return self.ctx.get_hf_config(LlamaVidConfig)

    def get_hf_processor(self, **kwargs: object) -> LlamaVidProcessor:
        return _processor(self.ctx.model_config.model)

    def get_supported_mm_limits(self) -> Mapping[str, int | None]:
        return {"image": None, "video": None}

    def get_supported_mm_processor_kwargs(self) -> dict[str, set[str]]:
        # no HF processor options: everything is in the model's config
        return {"text_kwargs": set()}

    def placeholder_id(self, modality: str) -> int:
        return self.get_tokenizer().convert_tokens_to_ids(PLACEHOLDERS[modality])

    def max_frames(self, seq_len: int) -> int:
        """The most frames a video can bring: the loader's cap, or what fits the context when there is none."""
        options = self.ctx.get_mm_config().media_io_kwargs.get("video", {})
        cap = int(options.get("num_frames", DEFAULT_MAX_FRAMES))
        fit = max(seq_len // self.get_hf_config().tokens_per_frame, 1)
        return fit if cap <= 0 else min(cap, fit)

    def get_mm_max_tokens_per_item(self, seq_len: int, mm_counts: Mapping[str, int]) -> Mapping[str, int]:
        per_frame = self.get_hf_config().tokens_per_frame
        return {"image": per_frame, "video": per_frame * self.max_frames(seq_len)}


class LlamaVidDummyInputsBuilder(BaseDummyInputsBuilder[LlamaVidProcessingInfo]):
    """The largest inputs, for vLLM's start-up memory profile."""

    def get_dummy_text(self, mm_counts: Mapping[str, int]) -> str:
        return "".join(PLACEHOLDERS[m] * n for m, n in mm_counts.items() if m in PLACEHOLDERS)

    def get_dummy_mm_data(self, seq_len: int, mm_counts: Mapping[str, int], mm_options=None):
        size = self.info.get_hf_config().image_size
        options = mm_options or {}
        videos = max(mm_counts.get("video", 0), 1)
        return {
            "image": self._get_dummy_images(
                width=size, height=size, num_images=mm_counts.get("image", 0), overrides=options.get("image")
            ),
            "video": self._get_dummy_videos(
                width=size,
                height=size,
                num_frames=max(self.info.max_frames(seq_len) // videos, 1),
                num_videos=mm_counts.get("video", 0),
                overrides=options.get("video"),
            ),
        }


def _pick(items, indices: list[int]):
    """A modality's items (vLLM's `ProcessorBatchItems`), in the order `indices` gives, repeats allowed."""
    picked = copy.copy(items)
    picked.data = [items.data[i] for i in indices]
    if isinstance(getattr(items, "metadata", None), list):
        picked.metadata = [items.metadata[i] for i in indices]
    return picked


class LlamaVidMultiModalProcessor(BaseMultiModalProcessor[LlamaVidProcessingInfo]):
    def apply(self, inputs, timing_ctx):
        text = self._prompt_text(inputs.prompt)
        if inputs.mm_data_items:
            text, inputs = self._show_media_again(text, inputs)
        options = {**inputs.hf_processor_mm_kwargs, QFORMER_TEXT: self._item_prompts(text, inputs)}
        prompt = self._chunkwise_ids(text, inputs.prompt) if inputs.mm_data_items else inputs.prompt
        return super().apply(dataclasses.replace(inputs, prompt=prompt, hf_processor_mm_kwargs=options), timing_ctx)

    def _show_media_again(self, text: str, inputs):
        """Our engine's multi-turn layout (`layout.reshow_media`): a later user turn without media shows the
        latest media again, each copy an item of its own (so it gets that turn's question and its own hash)."""
        shown, sources = reshow_media(text, get_template(self.info.get_hf_config().chat_template))
        counts = inputs.mm_data_items.get_all_counts()
        originals = Counter(MODALITY_OF[p] for p in PLACEHOLDER_PATTERN.findall(text))
        if shown == text or any(originals[m] != n for m, n in counts.items()):
            return text, inputs  # nothing to repeat, or placeholders that vLLM will refuse anyway
        picks: dict[str, list[int]] = {modality: [] for modality in counts}
        for placeholder, index in sources:
            picks[MODALITY_OF[placeholder]].append(index)
        items = type(inputs.mm_data_items)(
            {m: _pick(inputs.mm_data_items[m], indices) for m, indices in picks.items()}
        )
        uuids = inputs.mm_uuid_items and {
            m: [values[i] for i in picks[m]] if m in picks else values for m, values in inputs.mm_uuid_items.items()
        }
        return shown, dataclasses.replace(inputs, mm_data_items=items, mm_uuid_items=uuids)

    def _prompt_text(self, ids: list[int]) -> str:
        tokenizer = self.info.get_tokenizer()
        text = tokenizer.decode(ids, skip_special_tokens=False)
        if tokenizer.bos_token and text.startswith(tokenizer.bos_token):
            text = text[len(tokenizer.bos_token) :]
        return text

    def _chunkwise_ids(self, text: str, ids: list[int]) -> list[int]:
        """The prompt tokenized as our processor does, each chunk after a placeholder on its own (a SentencePiece
        tokenizer starts it with "▁", which one pass over the whole text would not), one placeholder id each."""
        chunks, placeholders = self.info.get_hf_processor().tokenize_chunks(text)
        bos = self.info.get_tokenizer().bos_token_id
        if chunks[0][:1] == [bos] and ids[:1] != [bos]:
            chunks[0] = chunks[0][1:]  # a prompt given without BOS stays without
        out = list(chunks[0])
        for placeholder, chunk in zip(placeholders, chunks[1:], strict=True):
            out += [self.info.placeholder_id(MODALITY_OF[placeholder]), *chunk]
        return out

    def _item_prompts(self, text: str, inputs) -> dict[str, list[str]]:
        """{modality: Q-Former prompt of each item}, from the prompt's text (see `layout`)."""
        template = get_template(self.info.get_hf_config().chat_template)
        prompts: dict[str, list[str]] = {modality: [] for modality in PLACEHOLDERS}
        for placeholder, prompt in placeholder_prompts(text, template):
            prompts[MODALITY_OF[placeholder]].append(prompt)
        fallback = whole_text_prompt(text)
        for modality, items in inputs.mm_data_items.items():
            # a prompt with fewer placeholders than items is refused by vLLM after this; keep the counts equal
            prompts[modality] = (prompts.get(modality, []) + [fallback] * len(items))[: len(items)]
        return prompts

    def _get_mm_hashes(self, inputs):
        prompts = inputs.hf_processor_mm_kwargs.get(QFORMER_TEXT, {})
        options = {k: v for k, v in inputs.hf_processor_mm_kwargs.items() if k != QFORMER_TEXT}
        hashes = super()._get_mm_hashes(dataclasses.replace(inputs, hf_processor_mm_kwargs=options))
        algorithm = self.info.ctx.get_mm_config().mm_hasher_algorithm
        max_length = self.info.get_hf_config().qformer_max_length
        return {
            modality: [
                MultiModalHasher.hash_kwargs(
                    algorithm, media=item_hash, qformer_text=prompts[modality][i], qformer_max_length=max_length
                )
                for i, item_hash in enumerate(item_hashes)
            ]
            for modality, item_hashes in hashes.items()
        }

    def _get_cache_missing_processor_kwargs(self, inputs, mm_is_cached):
        prompts = inputs.hf_processor_mm_kwargs.get(QFORMER_TEXT, {})
        missing = {
            modality: [p for p, cached in zip(items, mm_is_cached.get(modality, []), strict=False) if not cached]
            for modality, items in prompts.items()
        }
        return {**inputs.hf_processor_mm_kwargs, QFORMER_TEXT: missing}

    def _call_hf_processor(self, hf_data: Mapping[str, object], hf_kwargs: Mapping[str, object]) -> BatchFeature:
        processor = self.info.get_hf_processor()
        prompts = hf_kwargs.get(QFORMER_TEXT, {})
        data = {}
        for modality, key in (("image", "images"), ("video", "videos")):
            items = hf_data.get(key) or []
            if not items:
                continue
            # a video item may come with the loader's metadata
            media = [item[0] if isinstance(item, tuple) else item for item in items]
            data[PIXEL_KEYS[modality]] = [processor.preprocess(item) for item in media]
            data[QFORMER_KEYS[modality]] = [processor.tokenize_qformer([p])[0][0] for p in prompts[modality]]
        return BatchFeature(data)

    def _get_mm_fields_config(self, hf_inputs: BatchFeature, hf_processor_mm_kwargs) -> Mapping[str, object]:
        fields = {}
        for modality in PLACEHOLDERS:
            for key in (PIXEL_KEYS[modality], QFORMER_KEYS[modality]):
                if key in hf_inputs:
                    fields[key] = MultiModalFieldConfig.batched(modality)
        return fields

    def _get_prompt_updates(self, mm_items, hf_processor_mm_kwargs, out_mm_kwargs) -> Sequence[PromptReplacement]:
        per_frame = self.info.get_hf_config().tokens_per_frame
        image_id, video_id = self.info.placeholder_id("image"), self.info.placeholder_id("video")

        def video_tokens(index: int) -> list[int]:
            frames = mm_items.get_items("video", VideoProcessorItems).get_num_frames(index)
            return [video_id] * (frames * per_frame)

        return [
            PromptReplacement(modality="image", target=[image_id], replacement=[image_id] * per_frame),
            PromptReplacement(modality="video", target=[video_id], replacement=video_tokens),
        ]


__all__ = [
    "LlamaVidDummyInputsBuilder",
    "LlamaVidMultiModalProcessor",
    "LlamaVidProcessingInfo",
    "QFORMER_TEXT",
]
