"""Long-video feature files: what `llamavid extract-features` writes and movie chat reads.

One safetensors file per video: `features` (T, 1 + N, V) in float16 (the vision tower's output, CLS kept, as the
original's MovieNet files), `timestamps` (T,) in seconds, and in the header metadata: the vision-tower
fingerprint, its width and image size, the source file, the sampling rate, and the subtitle lines aligned to each
frame (JSON). The original's `.pkl` files (`{"feats": float16 array, "inputs": "<image>subs<image>subs..."}`)
are read with a restricted unpickler that can rebuild numpy arrays and nothing else.
"""

from __future__ import annotations

import json
import math
import mmap
import os
import pickle
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic_files import atomic_write
from ..errors import LlamaVidError
from ..model.checkpoint_files import SAFETENSORS_DTYPES

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
    # with `mapped=True`: hands the features' resident pages back to the system (see `MappedTensor`)
    release: Callable[[], None] | None = None

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


class MappedTensor:
    """A tensor whose data is a private, read-only-in-practice mapping of a file: its pages come in as they are
    read and `release()` hands them back (madvise DONTNEED), to be read again from the file if touched. A movie's
    features are read once, by the question stage; released, they no longer count in the process's memory
    through the LLM prefill, the peak of a long question."""

    def __init__(self, handle, offset: int, dtype: torch.dtype, shape: tuple[int, ...]):
        self._map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY)  # private: a write never reaches the file
        count = math.prod(shape)
        self.tensor = torch.frombuffer(self._map, dtype=dtype, count=count, offset=offset).view(shape)

    def release(self) -> None:
        if hasattr(mmap, "MADV_DONTNEED") and not self._map.closed:
            self._map.madvise(mmap.MADV_DONTNEED)


def _safetensors_offset(handle, name: str) -> tuple[int, torch.dtype, tuple[int, ...]] | None:
    """(byte offset, dtype, shape) of tensor `name` in an open safetensors file: the format is an 8-byte header
    length, a JSON header with each tensor's data offsets, then the data."""
    size = int.from_bytes(handle.read(8), "little")
    header = json.loads(handle.read(size))
    entry = header.get(name)
    dtype = SAFETENSORS_DTYPES.get(entry["dtype"]) if entry is not None else None
    if dtype is None:
        return None
    offset = 8 + size + entry["data_offsets"][0]
    return (offset, dtype, tuple(entry["shape"])) if offset % dtype.itemsize == 0 else None


def _mapped(path: Path, features: torch.Tensor | None, spill_dir) -> MappedTensor | None:
    """`path`'s features as a mapping of the file itself (a safetensors file, `features` None) or, for features
    already read (a pickle), of an unnamed temporary copy in `spill_dir`; None where mapping is not possible."""
    try:
        if features is None:
            with open(path, "rb") as handle:
                place = _safetensors_offset(handle, "features")
                return None if place is None else MappedTensor(handle, *place)
        with tempfile.TemporaryFile(dir=spill_dir) as handle:  # gone from the folder at once; the mapping keeps it
            handle.write(features.contiguous().numpy().data)
            handle.flush()
            return MappedTensor(handle, 0, features.dtype, tuple(features.shape))
    except (OSError, ValueError, TypeError) as error:
        warnings.warn(f"{path}: features kept in memory, not mapped ({error})", stacklevel=3)
        return None


def read_feature_file(path: str | os.PathLike, mapped: bool = False, spill_dir=None) -> FeatureFile:
    """A `.safetensors` file written by `write_feature_file`, or an original `.pkl` movie file. `mapped` maps the
    features from the file (a pickle's through a temporary copy in `spill_dir`, default the system's) and gives
    the FeatureFile a `release` for their pages."""
    path = Path(path)
    if not path.is_file():
        raise FeatureFileError(f"{path}: no such feature file")
    if path.suffix == ".pkl":
        movie = read_original_pickle(path)
        mapping = _mapped(path, movie.features, spill_dir) if mapped else None
        if mapping is not None:
            movie.features, movie.release = mapping.tensor, mapping.release
        return movie
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = dict(handle.metadata() or {})
            names = set(handle.keys())
            mapping = _mapped(path, None, spill_dir) if mapped else None
            features = mapping.tensor if mapping is not None else handle.get_tensor("features")
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
    return FeatureFile(features, timestamps, subtitles, include_cls, metadata,
                       release=mapping.release if mapping is not None else None)


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
        with open(path, "rb") as handle:  # read as it unpickles: the array's bytes are held once, not twice
            data = _ArraysOnly(handle).load()
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


def pickled_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over an unpickled array without copying it. The array may be read-only (its data is the pickle's
    own bytes object, kept rather than copied); its users read it or make new tensors from it (casts, slices
    that are then cast), never write into it."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def read_original_pickle(path: str | os.PathLike) -> FeatureFile:
    """The original's movie `.pkl` as a FeatureFile; its `'...'` are removed, as the original's loader did."""
    array, inputs = load_original_pickle(path)
    features = pickled_tensor(array)
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
    "MappedTensor",
    "load_original_pickle",
    "pickled_tensor",
    "read_feature_file",
    "read_original_pickle",
    "write_feature_file",
]
