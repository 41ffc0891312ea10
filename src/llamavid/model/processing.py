"""LlamaVidProcessor: media -> pixels, chat text -> LLM ids with expanded placeholders, prompts -> Q-Former ids.

The processor owns all text work, so the model never sees a tokenizer: it expands every `<image>` (or `<video>`)
placeholder into exactly `frames x config.tokens_per_frame` copies of `config.image_token_id`, and the model
checks the count. Tokenization around placeholders follows the original's `tokenizer_image_token`: each text
chunk is tokenized on its own (so a chunk after a placeholder starts like a fresh text) and only the first
chunk keeps its BOS.

Images are padded to a square with the mean colour when `config.pad_to_square` (as the released models were
trained); video frames never are, as in the original.

It is a transformers `ProcessorMixin`, so `AutoProcessor.from_pretrained(folder)` opens a llamavid folder once
`llamavid.model.modeling` is imported. The folder layout and the loading stay ours: the config (config.json) is the
one record of the processing settings, so no processor_config.json is written, the image processor is always the
PIL `CLIPImageProcessorPil` the pixels were checked with, and an adapter folder has no LLM tokenizer until its base
LLM's is attached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature, BertTokenizer, ProcessorMixin
from transformers.models.bert.tokenization_bert import load_vocab
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from ..errors import ModelLoadError
from .chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template
from .configuration import LlamaVidConfig

PLACEHOLDER_PATTERN = re.compile(f"{re.escape(IMAGE_PLACEHOLDER)}|{re.escape(VIDEO_PLACEHOLDER)}")
QFORMER_TOKENIZER_DIR = "qformer_tokenizer"
QFORMER_BOS = "[DEC]"


@dataclass
class Video:
    """Frames of one video, uint8 (T, H, W, 3); anything with a `.frames` array works the same way."""

    frames: np.ndarray


def pad_colour(image_mean: Sequence[float]) -> tuple[int, ...]:
    """The original's padding colour: the processor mean x 255, truncated (122, 116, 104 for CLIP)."""
    return tuple(int(m * 255) for m in image_mean)


def pad_to_square(image: Image.Image, colour: tuple[int, ...]) -> Image.Image:
    """Centre the image on a square canvas of its longer side (offset (long - short) // 2)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), colour)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def whole_text_prompt(text: str) -> str:
    """The Q-Former prompt of a text whose placeholders have no prompts of their own: the whole text without
    placeholders (what every placeholder of a raw prompt reads)."""
    return PLACEHOLDER_PATTERN.sub("", text).strip()


def tokenize_between_placeholders(
    tokenizer, text: str, pattern: re.Pattern = PLACEHOLDER_PATTERN, encode: Callable[[str], list[int]] | None = None
) -> tuple[list[list[int]], list[str]]:
    """The original's `tokenizer_image_token`: the text chunks around each placeholder (`pattern`) tokenized on
    their own, the BOS of every chunk after the first dropped; returns the chunks' ids and the placeholders
    between them. `encode` (chunk -> ids, default the tokenizer's) lets training remember repeated chunks."""
    encode = encode or (lambda chunk: tokenizer(chunk).input_ids)
    bos = tokenizer.bos_token_id
    chunks = []
    for index, chunk in enumerate(pattern.split(text)):
        chunk_ids = encode(chunk)
        if index > 0 and bos is not None and chunk_ids[:1] == [bos]:
            chunk_ids = chunk_ids[1:]
        chunks.append(chunk_ids)
    return chunks, pattern.findall(text)


def build_qformer_tokenizer(vocab_file: str | Path) -> BertTokenizer:
    """The Q-Former's BERT tokenizer as the original builds it: uncased WordPiece, `[DEC]` added as BOS, and left
    truncation so that long prompts keep their end."""
    vocab = load_vocab(str(vocab_file))
    if not vocab:
        raise ModelLoadError(f"{vocab_file} is not a WordPiece vocabulary (one token a line)")
    tokenizer = BertTokenizer(vocab=dict(vocab), do_lower_case=True, truncation_side="left")
    tokenizer.add_special_tokens({"bos_token": QFORMER_BOS})
    return tokenizer


def _as_frames(item) -> tuple[list[Image.Image], bool]:
    """(frames as RGB PIL images, is_video) for an image, a frame array (T, H, W, 3) or a video object."""
    if isinstance(item, Image.Image):
        return [item.convert("RGB")], False
    frames = getattr(item, "frames", item)
    if isinstance(frames, torch.Tensor):
        frames = frames.cpu().numpy()
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3 and not hasattr(item, "frames"):
            return [Image.fromarray(frames).convert("RGB")], False
        if frames.ndim == 4:
            return [Image.fromarray(frame) for frame in frames], True
        raise ValueError(
            f"Expected an image (H, W, 3) or frames (T, H, W, 3), got an array of shape {frames.shape}"
        )
    if isinstance(frames, (list, tuple)) and frames and all(isinstance(f, Image.Image) for f in frames):
        return [f.convert("RGB") for f in frames], True
    raise TypeError(
        f"Unsupported media item of type {type(item).__name__}: pass a PIL image or frames (T, H, W, 3)"
    )


class LlamaVidProcessor(ProcessorMixin):
    """Prepares model inputs; see the module docstring. Saved and loaded beside the model.

    transformers' `chat_template` (a Jinja template) stays None: the conversation format is the template named by
    `config.chat_template`, rendered by `render_chat`.
    """

    def __init__(self, image_processor, tokenizer, qformer_tokenizer, config: LlamaVidConfig):
        super().__init__(image_processor, tokenizer, qformer_tokenizer)
        self.config = config

    def check_argument_for_proper_class(self, argument_name, argument):
        """transformers' check of each part's class, except that the LLM tokenizer may be None (an adapter folder's
        comes from its base LLM after loading)."""
        if argument_name == "tokenizer" and argument is None:
            return None
        return super().check_argument_for_proper_class(argument_name, argument)

    def to_dict(self) -> dict:
        """transformers' description of the processor, without the model config, whose record is config.json."""
        data = super().to_dict()
        data.pop("config", None)
        return data

    # -- images ----------------------------------------------------------------------------------------------

    def preprocess(self, item, pad: bool | None = None) -> torch.Tensor:
        """One media item -> pixels (F, 3, S, S): an image is padded to a square as `pad` says (default: the
        config's `pad_to_square`), video frames never are."""
        frames, is_video = _as_frames(item)
        if (self.config.pad_to_square if pad is None else pad) and not is_video:
            frames = [pad_to_square(frame, pad_colour(self.image_processor.image_mean)) for frame in frames]
        return self.image_processor(frames, return_tensors="pt")["pixel_values"]

    # -- text ------------------------------------------------------------------------------------------------

    def render_chat(self, messages: list[tuple[str, str]], template: str | None = None) -> str:
        """Chat messages -> prompt text with the model's template (or `template`), ending in an open turn."""
        return get_template(template or self.config.chat_template).render(messages)

    def tokenize(self, text: str, frames_per_placeholder: Sequence[int]) -> list[int]:
        """LLM ids for `text`, each placeholder expanded to frames x tokens_per_frame image-token ids."""
        chunks, placeholders = self.tokenize_chunks(text)
        if len(placeholders) != len(frames_per_placeholder):
            raise ValueError(
                f"The text has {len(placeholders)} visual placeholders but {len(frames_per_placeholder)} "
                "were described"
            )
        ids = list(chunks[0])
        for frames, chunk in zip(frames_per_placeholder, chunks[1:], strict=True):
            ids += [self.config.image_token_id] * (frames * self.config.tokens_per_frame) + chunk
        return ids

    def tokenize_chunks(self, text: str) -> tuple[list[list[int]], list[str]]:
        """The ids of each text chunk between placeholders and the placeholders between them (see
        `tokenize_between_placeholders`), for callers that lay out the visual positions themselves (the vLLM
        plugin)."""
        if self.tokenizer is None:
            raise ModelLoadError("This processor has no LLM tokenizer; convert the model with its tokenizer files")
        return tokenize_between_placeholders(self.tokenizer, text)

    def tokenize_qformer(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-Former ids (S, Lq) and mask: [CLS] prompt [SEP], padded to the longest, left-truncated. Each distinct
        prompt is tokenized once: a movie asks the same question of every one of its thousands of frames."""
        distinct = list(dict.fromkeys(prompts))
        encoded = self.qformer_tokenizer(
            distinct,
            padding="longest",
            truncation=True,
            max_length=self.config.qformer_max_length,
            return_tensors="pt",
        )
        ids, mask = encoded["input_ids"], encoded["attention_mask"]
        if len(distinct) == len(prompts):
            return ids, mask
        row = {prompt: index for index, prompt in enumerate(distinct)}
        rows = torch.tensor([row[prompt] for prompt in prompts], dtype=torch.long)
        return ids[rows], mask[rows]

    # -- everything ------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str],
        media: Sequence | None = None,
        qformer_text: Sequence | None = None,
        padding_side: str = "left",
    ) -> BatchFeature:
        """Batch of prompts -> model inputs.

        `media[b]` lists sample b's media items (PIL images, frame arrays or videos); sample b's placeholders
        either show one item each, in order, or all show its single item (multi-turn). `qformer_text[b]` gives
        one Q-Former prompt per placeholder, or one string for all of them; by default the sample's text without
        placeholders. Text-only samples have no placeholders and an empty media list.
        """
        texts = [text] if isinstance(text, str) else list(text)
        if media is not None and isinstance(text, str):
            media = [media]
        media = [[] for _ in texts] if media is None else [list(m) for m in media]
        if qformer_text is None:
            qformer_text = [None] * len(texts)
        elif isinstance(text, str):
            qformer_text = [qformer_text]
        if not len(texts) == len(media) == len(qformer_text):
            raise ValueError(
                f"{len(texts)} texts, {len(media)} media lists and {len(qformer_text)} Q-Former prompt lists: "
                "give one of each per sample"
            )

        pixels, frame_counts, segment_media, prompts, sequences = [], [], [], [], []
        for sample_text, items, sample_prompts in zip(texts, media, qformer_text, strict=True):
            placeholders = len(PLACEHOLDER_PATTERN.findall(sample_text))
            targets = self._segment_targets(placeholders, len(items))
            first_item = len(frame_counts)
            for item in items:
                item_pixels = self.preprocess(item)
                pixels.append(item_pixels)
                frame_counts.append(item_pixels.shape[0])
            segment_media += [first_item + t for t in targets]
            prompts += self._segment_prompts(sample_text, sample_prompts, placeholders)
            sequences.append(self.tokenize(sample_text, [frame_counts[first_item + t] for t in targets]))

        data = self.pad(sequences, padding_side)
        if pixels:
            data["pixel_values"] = torch.cat(pixels)
            data["media_frame_counts"] = torch.tensor(frame_counts, dtype=torch.long)
        if prompts:
            data["qformer_input_ids"], data["qformer_attention_mask"] = self.tokenize_qformer(prompts)
            data["segment_media_index"] = torch.tensor(segment_media, dtype=torch.long)
        return BatchFeature(data)

    @staticmethod
    def _segment_targets(placeholders: int, items: int) -> list[int]:
        if items == placeholders:
            return list(range(items))
        if items == 1 and placeholders > 1:
            return [0] * placeholders
        raise ValueError(
            f"A sample has {placeholders} visual placeholders and {items} media items: give one item per "
            "placeholder, or one item for all of them"
        )

    @staticmethod
    def _segment_prompts(text: str, prompts, placeholders: int) -> list[str]:
        if placeholders == 0:
            return []
        if prompts is None:
            prompts = whole_text_prompt(text)
        if isinstance(prompts, str):
            return [prompts] * placeholders
        if len(prompts) != placeholders:
            raise ValueError(f"{len(prompts)} Q-Former prompts for {placeholders} visual placeholders")
        return list(prompts)

    def pad(self, sequences: list[list[int]], side: str = "left") -> dict[str, torch.Tensor]:
        """Token-id lists -> `input_ids` and `attention_mask`, padded with the tokenizer's pad id (left for
        generation, right for training)."""
        if side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
        pad_id = self.pad_token_id
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, seq in enumerate(sequences):
            span = slice(length - len(seq), length) if side == "left" else slice(0, len(seq))
            ids[row, span] = torch.tensor(seq, dtype=torch.long)
            mask[row, span] = 1
        return {"input_ids": ids, "attention_mask": mask}

    @property
    def pad_token_id(self) -> int:
        """What prompts are padded with, in the processor and in `generate`: the tokenizer's pad token, else its
        EOS (transformers' own fallback), else 0. Padded positions are masked, so the choice never changes an
        answer."""
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id):
            if candidate is not None:
                return candidate
        return 0

    def decode(self, ids, **kwargs) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, **kwargs)

    # -- persistence -----------------------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.image_processor.save_pretrained(directory)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(directory)
        self.qformer_tokenizer.save_pretrained(directory / QFORMER_TOKENIZER_DIR)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, config: LlamaVidConfig | None = None, **kwargs
    ) -> LlamaVidProcessor:
        """The processor of a saved folder. `kwargs` are the Hub options that `AutoProcessor.from_pretrained` passes
        on (revision, cache_dir, ...): a local folder has no use for them."""
        directory = Path(directory)
        config = config or LlamaVidConfig.from_pretrained(directory)
        image_processor = CLIPImageProcessorPil.from_pretrained(directory)
        has_tokenizer = any((directory / name).exists() for name in ("tokenizer.json", "tokenizer.model"))
        # the config given: AutoTokenizer would read config.json itself and warn that `llamavid` is not its type
        tokenizer = AutoTokenizer.from_pretrained(directory, config=config) if has_tokenizer else None
        qformer_dir = directory / QFORMER_TOKENIZER_DIR
        if not any((qformer_dir / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
            # transformers would quietly build a 5-word tokenizer from an empty folder: every prompt word [UNK]
            raise ModelLoadError(f"{qformer_dir}: no Q-Former tokenizer (tokenizer.json or vocab.txt) in the folder")
        qformer_tokenizer = BertTokenizer.from_pretrained(qformer_dir)
        return cls(image_processor, tokenizer, qformer_tokenizer, config)


def image_processor_from_clip_config(path: str | Path) -> CLIPImageProcessorPil:
    """The CLIP image processor of an original `processor/clip-patch14-*` folder (its preprocessor_config.json)."""
    settings = json.loads(Path(path).read_text())
    size = settings.get("size", 224)
    crop = settings.get("crop_size", size)
    return CLIPImageProcessorPil(
        size={"shortest_edge": size["shortest_edge"] if isinstance(size, dict) else size},
        crop_size=crop if isinstance(crop, dict) else {"height": crop, "width": crop},
        image_mean=settings.get("image_mean"),
        image_std=settings.get("image_std"),
        resample=settings.get("resample", 3),
        do_center_crop=settings.get("do_center_crop", True),
        do_normalize=settings.get("do_normalize", True),
        do_resize=settings.get("do_resize", True),
    )


__all__ = [
    "LlamaVidProcessor",
    "Video",
    "build_qformer_tokenizer",
    "image_processor_from_clip_config",
    "pad_colour",
    "pad_to_square",
    "tokenize_between_placeholders",
    "whole_text_prompt",
]
