"""Exact-match evaluation of single-word answers on held-out synthetic records (greedy, batched)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import torch

from ..model.chat_templates import IMAGE_PLACEHOLDER


def first_word(text: str) -> str:
    words = re.findall(r"[a-z]+", text.lower())
    return words[0] if words else ""


@torch.no_grad()
def evaluate_records(
    model, processor, records: list[dict], video_folder, batch_size: int = 32, template: str | None = None,
    max_new_tokens: int = 4,
) -> dict:
    """Accuracy overall and per `type` (records carry `type` and `answer`, as the generator writes them), and
    `one_word_rate`: the share of answers that are one word (meaningful when `max_new_tokens` leaves room for
    more)."""
    from ..media import load_video
    from ..model.processing import Video
    from .preprocess import qformer_prompt

    model.eval()
    template = template or model.config.chat_template
    hits: dict[str, list[int]] = defaultdict(list)
    one_word: list[int] = []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        texts, media, prompts = [], [], []
        for record in batch:
            question = record["conversations"][0]["value"]
            question = f"{IMAGE_PLACEHOLDER}\n{question.replace(IMAGE_PLACEHOLDER, '').strip()}"
            texts.append(processor.render_chat([("user", question)], template=template))
            clip = load_video(Path(video_folder) / record["video"], fps=model.config.video_fps)
            media.append([Video(clip.frames)])
            prompts.append(qformer_prompt(question))
        inputs = processor(texts, media=media, qformer_text=prompts, padding_side="left").to(model.device)
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        for record, row in zip(batch, output[:, inputs["input_ids"].shape[1] :], strict=True):
            text = processor.decode(row)
            hits[record["type"]].append(int(first_word(text) == record["answer"]))
            one_word.append(int(len(re.findall(r"[A-Za-z]+", text)) == 1))
    figures = {f"{kind}_accuracy": sum(v) / len(v) for kind, v in hits.items()}
    every = [h for v in hits.values() for h in v]
    figures["accuracy"] = sum(every) / max(len(every), 1)
    figures["one_word_rate"] = sum(one_word) / max(len(one_word), 1)
    figures["count"] = len(every)
    return figures


__all__ = ["evaluate_records", "first_word"]
