"""Vision features as a value worth keeping.

The vision tower is the expensive, prompt-independent stage: its output for a media file depends only on the
file's content, the sampling settings, the image processing and the tower's weights. `FeatureCache` keeps
those outputs in memory (a small LRU for a chat session) and optionally on disk (one safetensors file per key),
so a second question about the same video, or a second evaluation run with another prompt, skips the tower.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic_files import atomic_write

logger = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (content, not name or date: a renamed copy hits the same cache entry)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def content_digest(source: bytes | str | os.PathLike) -> str:
    """What a medium's features depend on besides sampling and tower: a file's (or received bytes') sha256, so
    the same content is one cache entry whichever route it came by; a folder of frames by its path and time."""
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest()
    path = Path(source)
    if path.is_dir():
        return f"dir:{path.resolve()}:{path.stat().st_mtime_ns}"
    return file_digest(path)


FINGERPRINT_SAMPLE = 64
"""Elements read from the start, middle and end of each vision tower tensor for its fingerprint."""


def _sample(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.detach().reshape(-1)
    if flat.numel() <= 3 * FINGERPRINT_SAMPLE:
        return flat
    middle = flat.numel() // 2
    return torch.cat([flat[:FINGERPRINT_SAMPLE], flat[middle : middle + FINGERPRINT_SAMPLE], flat[-FINGERPRINT_SAMPLE:]])


def vision_fingerprint(model, image_processor=None, whole: bool = False) -> str:
    """A digest of the vision tower's weights and the image processing settings: features made by another
    tower, or at another size, never match.

    Every tensor's name, dtype and shape go in, but only a sample of its values (start, middle, end): a released
    tower is 2 GB, memory-mapped, and a model that only answers about precomputed movie features should not read
    it all to check a file's stamp. Towers trained apart differ everywhere, so the sample tells them apart.
    `whole=True` digests every value, as feature files stamped before the sampled digest were."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.vision_tower.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        values = tensor if whole else _sample(tensor)
        if not whole:
            digest.update(str(tuple(tensor.shape)).encode())
        digest.update(values.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
    if image_processor is not None:
        digest.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def cache_key(content_digest: str, settings: dict, fingerprint: str) -> str:
    """Key of one media file's features: its content, how it was sampled and processed, which tower saw it."""
    payload = json.dumps(
        {"content": content_digest, "settings": settings, "vision": fingerprint}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:40]


class FeatureCache:
    """In-memory LRU of `memory_items` entries, backed by `directory` when given.

    Entries are dicts of tensors (features, timestamps, ...). Disk writes go to a temporary name first and are
    renamed into place, so an interrupted write never leaves a file that looks complete.
    """

    def __init__(self, directory: str | os.PathLike | None = None, memory_items: int = 8):
        self.directory = Path(directory) if directory else None
        self.memory_items = memory_items
        self._memory: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def _path(self, key: str) -> Path:
        return self.directory / f"{key}.safetensors"

    def get(self, key: str) -> dict[str, torch.Tensor] | None:
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key]
        if self.directory is not None and self._path(key).is_file():
            try:
                entry = load_file(self._path(key))
            except Exception as error:  # a damaged cache file is a miss, not a failure
                logger.warning("ignoring unreadable cache file %s: %s", self._path(key), error)
            else:
                self._remember(key, entry)
                self.hits += 1
                return entry
        self.misses += 1
        return None

    def put(self, key: str, entry: dict[str, torch.Tensor]) -> None:
        self._remember(key, entry)
        if self.directory is None:
            return
        with atomic_write(self._path(key)) as temporary:
            save_file({name: tensor.detach().to("cpu").contiguous() for name, tensor in entry.items()}, temporary)

    def _remember(self, key: str, entry: dict[str, torch.Tensor]) -> None:
        self._memory[key] = entry
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)


__all__ = ["FeatureCache", "cache_key", "file_digest", "vision_fingerprint"]
