"""Long-video feature files: what `llamavid extract-features` writes and movie chat reads.

One safetensors file per video: `features` (T, 1 + N, V) in float16 (the vision tower's output, CLS kept, as the
original's MovieNet files), `timestamps` (T,) in seconds, and in the header metadata: the vision-tower
fingerprint, its width and image size, the source file, the sampling rate, and the subtitle lines aligned to each
frame (JSON). The original's `.pkl` files (`{"feats": float16 array, "inputs": "<image>subs<image>subs..."}`)
are read with a restricted unpickler that can rebuild numpy arrays and nothing else.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic_files import atomic_write
from ..errors import LlamaVidError

FORMAT = "llamavid-features/1"
METADATA_KEY = "llamavid"


class FeatureFileError(LlamaVidError, ValueError):
    """A feature file that cannot be used: unreadable, or made by another vision tower."""


@dataclass
class FeatureFile:
    """A movie's vision features and what belongs to them."""

    features: torch.Tensor  # (T, T_tokens, V)
    timestamps: list[float]
    subtitles: list[list[str]]  # per frame
    include_cls: bool = True
    metadata: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.features.shape[0])

    @property
    def fingerprint(self) -> str | None:
        return self.metadata.get("vision_fingerprint")


def write_feature_file(path: str | os.PathLike, file: FeatureFile) -> None:
    """Write atomically: a temporary name, then a rename, so a killed run never leaves a complete-looking file."""
    fields = {k: str(v) for k, v in file.metadata.items()}
    fields.update(format=FORMAT, include_cls=file.include_cls, subtitles=file.subtitles)
    # one metadata entry: safetensors stores the metadata map in no fixed order, and a resumed run must write
    # the same bytes as an uninterrupted one
    metadata = {METADATA_KEY: json.dumps(fields, ensure_ascii=False, sort_keys=True)}
    tensors = {
        "features": file.features.detach().to("cpu", torch.float16).contiguous(),
        "timestamps": torch.tensor(file.timestamps, dtype=torch.float64),
    }
    with atomic_write(path) as temporary:
        save_file(tensors, temporary, metadata=metadata)


def read_feature_file(path: str | os.PathLike) -> FeatureFile:
    """A `.safetensors` file written by `write_feature_file`, or an original `.pkl` movie file."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file")
    if path.suffix == ".pkl":
        return read_original_pickle(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = dict(handle.metadata() or {})
            names = set(handle.keys())
            features = handle.get_tensor("features")
            timestamps = handle.get_tensor("timestamps").tolist() if "timestamps" in names else []
    except Exception as error:
        raise FeatureFileError(f"{path}: not a readable feature file ({error})") from None
    if features.dim() != 3:
        raise FeatureFileError(
            f"{path}: features must be (frames, tokens, width), got {tuple(features.shape)}"
        )
    metadata = json.loads(header[METADATA_KEY]) if METADATA_KEY in header else header
    subtitles = metadata.pop("subtitles", None) or [[] for _ in range(features.shape[0])]
    # files from elsewhere say nothing: patch grids are square, so a non-square token count carries a CLS
    include_cls = bool(metadata.pop("include_cls", math.isqrt(features.shape[1]) ** 2 != features.shape[1]))
    if not timestamps:
        timestamps = [float(i) for i in range(features.shape[0])]
    return FeatureFile(features, timestamps, subtitles, include_cls, metadata)


class _ArraysOnly(pickle.Unpickler):
    """Rebuilds numpy arrays, dicts, lists and strings; refuses every other global (no code runs)."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("collections", "OrderedDict"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a feature file")


def load_original_pickle(path: str | os.PathLike) -> tuple[np.ndarray, str]:
    """The two fields of the original's movie `.pkl`: features (T, 1 + N, V) with CLS, and `inputs`, one
    `<image>` per frame each followed by that frame's subtitles. Read with an unpickler that can only rebuild
    arrays (no code runs); the one reader of these files, for chat and for training."""
    try:
        with open(path, "rb") as handle:
            data = _ArraysOnly(io.BytesIO(handle.read())).load()
    except FileNotFoundError:
        raise FeatureFileError(f"{path}: no such feature file") from None
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError, TypeError, IndexError) as error:
        raise FeatureFileError(f"{path}: not an original LLaMA-VID feature pickle ({error})") from None
    if not isinstance(data, dict) or "feats" not in data or "inputs" not in data:
        raise FeatureFileError(f"{path}: expected a dict with 'feats' and 'inputs'")
    features = np.ascontiguousarray(data["feats"])
    if features.ndim != 3:
        raise FeatureFileError(f"{path}: 'feats' must be (frames, tokens, width), got {features.shape}")
    return features, str(data["inputs"])


def read_original_pickle(path: str | os.PathLike) -> FeatureFile:
    """The original's movie `.pkl` as a FeatureFile; its `'...'` are removed, as the original's loader did."""
    array, inputs = load_original_pickle(path)
    features = torch.from_numpy(array)
    chunks = inputs.replace("...", "").split("<image>")
    if len(chunks) - 1 != features.shape[0]:
        raise FeatureFileError(
            f"{path}: 'inputs' has {len(chunks) - 1} <image> markers for {features.shape[0]} frames of features"
        )
    subtitles = [[chunk] if chunk else [] for chunk in chunks[1:]]
    metadata = {"source": str(path), "vision_width": str(features.shape[-1]), "origin": "llama-vid pkl"}
    return FeatureFile(features, [float(i) for i in range(features.shape[0])], subtitles, True, metadata)


__all__ = [
    "FeatureFile",
    "FeatureFileError",
    "load_original_pickle",
    "read_feature_file",
    "read_original_pickle",
    "write_feature_file",
]
