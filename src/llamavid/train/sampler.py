"""The modality-grouped length sampler of stages 2 and 3 (LLaVA's `group_by_modality_length`).

Multimodal and text-only samples are grouped separately so that a batch holds one kind; within a megabatch
(world size x per-device batch) samples are sorted by length and spread over the devices with balanced total
length, so ranks finish their steps together.

Differences with the original: a data set with only one modality is shuffled by length alone instead of
crashing (the original's does); the permutation uses a generator seeded from the run seed and the epoch (the original
uses the global RNG), so a resumed run sees the same order.
"""

from __future__ import annotations

import torch

from .data import DataError


def split_evenly(indices: list[int], lengths: list[int], chunks: int) -> list[list[int]]:
    """Longest first, each into the chunk with the least total length that still has room."""
    if len(indices) % chunks:
        return [indices[i::chunks] for i in range(chunks)]
    per_chunk = len(indices) // chunks
    out: list[list[int]] = [[] for _ in range(chunks)]
    totals = [0.0] * chunks
    for index in indices:
        target = totals.index(min(totals))
        out[target].append(index)
        totals[target] += lengths[index]
        if len(out[target]) == per_chunk:
            totals[target] = float("inf")
    return out


def length_grouped(lengths: list[int], batch_size: int, world_size: int, generator) -> list[int]:
    """Random megabatches, each sorted longest first and split evenly over the ranks."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    size = batch_size * world_size
    out: list[int] = []
    for start in range(0, len(order), size):
        megabatch = sorted(order[start : start + size], key=lambda i: lengths[i], reverse=True)
        for chunk in split_evenly(megabatch, lengths, world_size):
            out += chunk
    return out


def modality_grouped(lengths: list[int], batch_size: int, world_size: int, generator) -> list[int]:
    """The original's order: positive lengths = samples with media, negative = text-only."""
    if any(length == 0 for length in lengths):
        raise DataError("modality lengths must be non-zero (a sample with no words?)")
    media = [i for i, length in enumerate(lengths) if length > 0]
    text = [i for i, length in enumerate(lengths) if length < 0]
    if not media or not text:
        return length_grouped([abs(length) for length in lengths], batch_size, world_size, generator)
    size = batch_size * world_size

    def megabatches(group: list[int]) -> list[list[int]]:
        local = length_grouped([abs(lengths[i]) for i in group], batch_size, world_size, generator)
        ordered = [group[i] for i in local]
        return [ordered[i : i + size] for i in range(0, len(ordered), size)]

    media_batches, text_batches = megabatches(media), megabatches(text)
    leftover = media_batches[-1] + text_batches[-1]
    full = media_batches[:-1] + text_batches[:-1]
    full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
    if len(leftover) >= size:
        full = [leftover[:size], *full]
        leftover = leftover[size:]
    if leftover:
        full.append(leftover)
    return [i for batch in full for i in batch]


class ModalityLengthSampler(torch.utils.data.Sampler):
    """Yields `modality_grouped` indices; a new order every epoch, reproducible from `seed`."""

    def __init__(self, lengths: list[int], batch_size: int, world_size: int = 1, seed: int = 0):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(modality_grouped(self.lengths, self.batch_size, self.world_size, generator))


__all__ = ["ModalityLengthSampler", "length_grouped", "modality_grouped", "split_evenly"]
