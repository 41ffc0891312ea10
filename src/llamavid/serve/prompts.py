"""A conversation with encoded media -> one sample of model inputs (token ids, Q-Former prompts, features).

Layout, as in training (spec section 2.4) and as `ChatEngine.build_inputs` does for one medium:
* a user turn's media come first, one placeholder line each, in the order the message gave them, then its text;
  each placeholder's Q-Former prompt is that turn's text;
* a later user turn without media of its own shows again the media of the latest turn that had some, with its
  own question as the Q-Former prompt (the released models were trained with the medium in every turn; the
  web demo's follow-ups rely on it). A client that wants a text-only follow-up starts a text-only conversation.
* a system message replaces the template's system text.

The sample is kept unpadded (ids as a list, features per distinct medium) so the scheduler can pad and
concatenate any set of samples into one batch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from ..conversation import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template
from ..engine import ContextLengthError, MediaFeatures
from .errors import APIError
from .schemas import Turn


@dataclass
class Sample:
    """One request's inputs before batching."""

    ids: list[int]
    media: list[MediaFeatures] = field(default_factory=list)  # distinct media, in first-use order
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
    """Turns whose `media` are `MediaFeatures` -> a Sample; raises APIError for prompts that do not fit."""
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
        raise APIError("feature files and decoded media cannot be mixed in one conversation")
    prompt = chat_template.render(rendered)
    sample.ids = engine.processor.tokenize(prompt, frames)
    _check_length(engine, sample, frames)
    return sample


def _check_length(engine, sample: Sample, frames: list[int]) -> None:
    limit = engine.context_length
    if len(sample.ids) < limit:
        return
    visual = sum(frames) * engine.config.tokens_per_frame
    raise APIError(
        str(ContextLengthError(
            f"This model's maximum context length is {limit} tokens, but the prompt needs {len(sample.ids)} "
            f"({visual} of them visual: {sum(frames)} frames x {engine.config.tokens_per_frame} tokens); "
            "send fewer frames (num_frames / max_frames), fewer media or a shorter conversation"
        )),
        param="messages",
    )


def collate(engine, samples: list[Sample]) -> dict:
    """Left-padded model inputs for samples sharing a `batch_key`; placeholders fill in reading order."""
    processor = engine.processor
    pad_id = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else 0
    length = max(len(s.ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    mask = torch.zeros((len(samples), length), dtype=torch.long)
    features, counts, segment_index, prompts = [], [], [], []
    for row, sample in enumerate(samples):
        ids[row, length - len(sample.ids):] = torch.tensor(sample.ids, dtype=torch.long)
        mask[row, length - len(sample.ids):] = 1
        offset = len(counts)
        for media in sample.media:
            features.append(media.features)
            counts.append(media.num_frames)
        segment_index += [offset + s for s in sample.segments]
        prompts += sample.prompts
    inputs = {"input_ids": ids, "attention_mask": mask}
    if features:
        inputs["vision_features"] = torch.cat(features)  # (F, T, V), media in reading order
        inputs["vision_features_include_cls"] = samples[0].include_cls
        inputs["media_frame_counts"] = torch.tensor(counts, dtype=torch.long)
        inputs["qformer_input_ids"], inputs["qformer_attention_mask"] = processor.tokenize_qformer(prompts)
        inputs["segment_media_index"] = torch.tensor(segment_index, dtype=torch.long)
    device = engine.device
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
