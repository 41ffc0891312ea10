"""Batching training samples: truncate, expand placeholders, right-pad, gather media and prompts.

Text ids are truncated to `model_max_length` BEFORE the visual expansion, as in the original (a placeholder
counts one id), so the real sequence may be longer. Then each surviving placeholder becomes
frames x tokens_per_frame placeholder ids (labels -100) and its segment gets its own Q-Former prompt.

Difference with the original: a placeholder cut in half by truncation cannot crash the splice: a segment whose
placeholders did not all survive is dropped with the text after it, and its prompt and media with it. The
attention mask is built from lengths, not from `ids != pad` (the pad id is `<unk>`, a real token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .data import DataError
from .preprocess import IGNORE_INDEX


@dataclass
class Collator:
    """`processor` gives the Q-Former tokenizer, the config (placeholder id) and the LLM pad id."""

    processor: object
    model_max_length: int

    def __call__(self, samples: list[dict]) -> dict[str, torch.Tensor]:
        config = self.processor.config
        placeholder = config.image_token_id
        pad_id = self.processor.tokenizer.pad_token_id
        pad_id = 0 if pad_id is None else pad_id
        sequences, label_rows, prompts, pixels, features, frame_counts, segment_media = [], [], [], [], [], [], []
        include_cls = set()
        for sample in samples:
            ids = list(sample["input_ids"][: self.model_max_length])
            labels = list(sample["labels"][: self.model_max_length])
            media_key = "pixel_values" if "pixel_values" in sample else "vision_features"
            if sample["prompts"] and media_key in sample:
                positions = [i for i, token in enumerate(ids) if token == placeholder]
                per_segment = sample["per_segment"]
                segments = len(positions) // per_segment
                if segments * per_segment < len(positions):  # a segment cut by truncation: drop its tail
                    cut = positions[segments * per_segment]
                    ids, labels = ids[:cut], labels[:cut]
                if segments:
                    media = sample[media_key]
                    (pixels if media_key == "pixel_values" else features).append(media)
                    if media_key == "vision_features":
                        include_cls.add(bool(sample.get("features_include_cls", False)))
                    frame_counts.append(media.shape[0])
                    segment_media += [len(frame_counts) - 1] * segments
                    prompts += sample["prompts"][:segments]
                ids, labels = self._expand(ids, labels, placeholder, sample["expand_each"])
            sequences.append(ids)
            label_rows.append(labels)
        batch = self._pad(sequences, label_rows, pad_id)
        if pixels and features:
            raise DataError(
                "a batch mixes pixel inputs and long-video features: use batch size 1 for long video"
            )
        if pixels or features:
            key = "pixel_values" if pixels else "vision_features"
            batch[key] = torch.cat(pixels or features)
            if len(include_cls) > 1:
                raise DataError("a batch mixes vision features with and without the CLS token")
            if features:
                batch["vision_features_include_cls"] = include_cls.pop()
            batch["media_frame_counts"] = torch.tensor(frame_counts, dtype=torch.long)
            batch["qformer_input_ids"], batch["qformer_attention_mask"] = self.processor.tokenize_qformer(
                prompts
            )
            batch["segment_media_index"] = torch.tensor(segment_media, dtype=torch.long)
        return batch

    @staticmethod
    def _expand(ids: list[int], labels: list[int], placeholder: int, count: int):
        if count == 1:
            return ids, labels
        out_ids, out_labels = [], []
        for token, label in zip(ids, labels, strict=True):
            if token == placeholder:
                out_ids += [placeholder] * count
                out_labels += [IGNORE_INDEX] * count
            else:
                out_ids.append(token)
                out_labels.append(label)
        return out_ids, out_labels

    @staticmethod
    def _pad(sequences, label_rows, pad_id: int) -> dict[str, torch.Tensor]:
        length = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
        labels = torch.full((len(sequences), length), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for row, (seq, lab) in enumerate(zip(sequences, label_rows, strict=True)):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            labels[row, : len(lab)] = torch.tensor(lab, dtype=torch.long)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


__all__ = ["Collator"]
