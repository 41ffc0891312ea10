"""A conversation with encoded media -> model inputs: the one place the chat layout is decided.

Used by the chat engine (one conversation) and the HTTP server (several conversations batched together).
Layout, as in training (spec section 2.4):

* a user turn's media come first, one placeholder line each, in the order the message gave them, then its text;
  each placeholder's Q-Former prompt is that turn's text;
* a later user turn without media of its own shows again the media of the latest turn that had some, with its
  own question as the Q-Former prompt (the released models were trained with the medium in every turn);
* a system text, when given, replaces the template's.

A `Sample` stays unpadded (ids as a list, features per distinct medium) so that any set of samples with the same
`batch_key` can be padded and concatenated into one batch by `collate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template


class ContextLengthError(ValueError):
    """Prompt plus visual tokens do not fit the model's context."""


@dataclass
class Turn:
    """One message: its role, its text, and the media it shows (in order)."""

    role: str
    text: str
    media: list = field(default_factory=list)


@dataclass
class Sample:
    """One conversation's inputs before batching."""

    ids: list[int]
    media: list = field(default_factory=list)  # distinct MediaFeatures, in first-use order
    segments: list[int] = field(default_factory=list)  # per placeholder: index into `media`
    prompts: list[str] = field(default_factory=list)  # per placeholder: its Q-Former prompt
    stop: list[str] = field(default_factory=list)  # the template's end-of-turn text first

    @property
    def include_cls(self) -> bool:
        return all(m.include_cls for m in self.media) if self.media else True

    @property
    def batch_key(self) -> tuple:
        """Samples with equal keys can share one `generate`: their features concatenate and agree on CLS."""
        if not self.media:
            return ()
        return (self.include_cls, tuple(self.media[0].features.shape[1:]))


def build_sample(engine, turns: list[Turn], system: str | None = None, template: str | None = None) -> Sample:
    """Turns whose media are `MediaFeatures` -> a Sample; `ContextLengthError` when it cannot fit."""
    chat_template = get_template(template or engine.config.chat_template)
    if system is not None:
        chat_template = dataclasses.replace(chat_template, system=system)
    sample = Sample(ids=[], stop=[chat_template.stop_string] if chat_template.stop_string else [])
    slots: dict[int, int] = {}  # id(MediaFeatures) -> index in sample.media
    rendered, frames, shown = [], [], []
    for turn in turns:
        text = turn.text.replace(IMAGE_PLACEHOLDER, "").replace(VIDEO_PLACEHOLDER, "").strip()
        if turn.role != "user":
            rendered.append((turn.role, text))
            continue
        shown = list(turn.media) or shown
        lines = []
        for media in shown:
            if id(media) not in slots:
                slots[id(media)] = len(sample.media)
                sample.media.append(media)
            sample.segments.append(slots[id(media)])
            sample.prompts.append(text)
            frames.append(media.num_frames)
            lines.append(VIDEO_PLACEHOLDER if media.is_video else IMAGE_PLACEHOLDER)
        rendered.append(("user", "\n".join([*lines, text]) if lines else text))
    if len({m.include_cls for m in sample.media}) > 1:
        raise ValueError("feature files and decoded media cannot be mixed in one conversation")
    sample.ids = engine.processor.tokenize(chat_template.render(rendered), frames)
    check_length(engine, len(sample.ids), frames)
    return sample


def check_length(engine, length: int, frames: list[int]) -> None:
    """Refuse a prompt that leaves no room to answer; say how many frames would fit."""
    limit = engine.context_length
    if length < limit:
        return
    message = f"This model's maximum context length is {limit} tokens, but the prompt needs {length}"
    if frames:
        per_frame = engine.config.tokens_per_frame
        visual = sum(frames) * per_frame
        fit = max(0, (limit - (length - visual) - 64) // (per_frame * len(frames)))
        message += (
            f" ({visual} of them visual: {sum(frames)} frames x {per_frame} tokens over {len(frames)} "
            f"placeholder(s)); use at most {fit} frames (--max-frames {fit}, or max_frames in a request), fewer "
            "media or a shorter conversation"
        )
    raise ContextLengthError(message)


def collate(engine, samples: list[Sample]) -> dict:
    """Left-padded model inputs for samples sharing a `batch_key`; placeholders fill in reading order."""
    processor = engine.processor
    features, counts, segment_index, prompts = [], [], [], []
    for sample in samples:
        offset = len(counts)
        for media in sample.media:
            features.append(media.features)
            counts.append(media.num_frames)
        segment_index += [offset + s for s in sample.segments]
        prompts += sample.prompts
    inputs = processor.pad([sample.ids for sample in samples], "left")
    if features:
        inputs["vision_features"] = torch.cat(features)  # (F, T, V), media in reading order
        inputs["vision_features_include_cls"] = samples[0].include_cls
        inputs["media_frame_counts"] = torch.tensor(counts, dtype=torch.long)
        inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = processor.tokenize_qformer(prompts)
        inputs["segment_media_index"] = torch.tensor(segment_index, dtype=torch.long)
    device = engine.device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}


__all__ = ["ContextLengthError", "Sample", "Turn", "build_sample", "check_length", "collate"]
