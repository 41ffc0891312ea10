"""Exact-match evaluation of single-word answers on held-out records (greedy, batched), for the recipes'
`evaluate:` block: prompts from the one prompt builder, answers from the model's one generator."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import torch

from ..inference.encoder import MediaEncoder, MediaFeatures
from ..inference.generation import GenerationSettings, Row, generator_for
from ..inference.inputs import Turn, build_sample, collate
from ..inference.settings import Sampling
from ..model.chat_templates import IMAGE_PLACEHOLDER
from .preprocess import qformer_prompt


def first_word(text: str) -> str:
    words = re.findall(r"[a-z]+", text.lower())
    return words[0] if words else ""


def evaluate_records(
    model, processor, records: list[dict], video_folder, batch_size: int = 32, template: str | None = None,
    max_new_tokens: int = 4,
) -> dict:
    """Accuracy overall and per `type` (records carry `type` and `answer`, as the synthetic set writes them), and
    `one_word_rate`: the share of answers that are one word (meaningful when `max_new_tokens` leaves room for
    more). Frames are decoded at their own size, as in training; the Q-Former sees the question as training
    shows it (`qformer_prompt`)."""
    model.eval()
    # frames decoded at their own size, as training decodes them; a batch's frames in one pass, as a forward
    encoder = MediaEncoder(model, processor, sampling=Sampling(decode_at_model_size=False), vision_batch_size=None)
    generator = generator_for(model, processor)
    settings = GenerationSettings(max_new_tokens=max_new_tokens)
    hits: dict[str, list[int]] = defaultdict(list)
    one_word: list[int] = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        questions = [record["conversations"][0]["value"].replace(IMAGE_PLACEHOLDER, "").strip() for record in batch]
        media = _videos(encoder, [Path(video_folder) / record["video"] for record in batch])
        samples = [
            build_sample(processor, [Turn("user", q, [m], qformer_prompt(f"{IMAGE_PLACEHOLDER}\n{q}"))], template=template)
            for q, m in zip(questions, media, strict=True)
        ]
        rows = [Row(max_new_tokens, sample.stop) for sample in samples]
        generator.run(collate(processor, samples, encoder.device), rows, settings)
        for record, row in zip(batch, rows, strict=True):
            hits[record["type"]].append(int(first_word(row.text) == record["answer"]))
            one_word.append(int(len(re.findall(r"[A-Za-z]+", row.text)) == 1))
    figures = {f"{kind}_accuracy": sum(v) / len(v) for kind, v in hits.items()}
    every = [h for v in hits.values() for h in v]
    figures["accuracy"] = sum(every) / max(len(every), 1)
    figures["one_word_rate"] = sum(one_word) / max(len(one_word), 1)
    figures["count"] = len(every)
    return figures


def _videos(encoder: MediaEncoder, paths: list[Path]) -> list[MediaFeatures]:
    """The batch's videos through the vision tower in one pass over all their frames (what a forward over the
    batch's pixels computes), split back per video."""
    pixels = [encoder.pixels(path, "video", encoder.sampling)[0] for path in paths]
    features = encoder.vision_features(torch.cat(pixels)).split([p.shape[0] for p in pixels])
    return [MediaFeatures(f, "video") for f in features]


__all__ = ["evaluate_records", "first_word"]
