"""Weight files read and written a piece at a time, so that converting a 7B or 13B checkpoint needs memory for
about one output shard, not for the model.

Reading: a `WeightFile` opens a `.bin`/`.pth` written by `torch.save` (the zip format) memory-mapped with
`weights_only=True`, so only the pages of the tensors actually used come into memory, and `release()` unmaps them
(a mapping keeps every page it touched resident until it is closed). Safetensors files are read tensor by tensor
through `safe_open`. Old pickle-only torch files cannot be mapped and are read whole, once. `meta()` gives every
tensor's shape and dtype without reading data, for the converter's key and shape checks.

Writing: `write_sharded_safetensors` writes the layout `PreTrainedModel.save_pretrained` writes (one
`model.safetensors`, or `model-0000k-of-0000n.safetensors` with `model.safetensors.index.json`, the same split by
`huggingface_hub.split_torch_state_dict_into_shards` and the same metadata), making each tensor only when its
shard is written.
"""

from __future__ import annotations

import gc
import json
import logging
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ..errors import LlamaVidError

logger = logging.getLogger(__name__)

SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
DEFAULT_SHARD_SIZE = "2GB"
"""Output shards are made whole in memory before they are written: their size bounds the converter's memory."""


class ConversionError(LlamaVidError, ValueError):
    """The inputs cannot be converted: the message names the files, keys or fields at fault."""


def _unwrap(data, path: Path) -> dict:
    if isinstance(data, dict) and isinstance(data.get("model"), dict):  # LAVIS files nest the state dict
        data = data["model"]
    if not isinstance(data, dict):
        raise ConversionError(f"{path} holds a {type(data).__name__}, not a state dict")
    return data


class WeightFile:
    """The tensors of one weights file, read on demand (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ConversionError(f"{self.path} does not exist")
        self.is_safetensors = self.path.suffix == ".safetensors"
        self._tensors: Mapping[str, torch.Tensor] | None = None
        self._mapped = self.is_safetensors or zipfile.is_zipfile(self.path)

    def _open(self) -> Mapping[str, torch.Tensor]:
        if self._tensors is None:
            if self.is_safetensors:
                self._tensors = _SafetensorsFile(self.path)
            else:
                try:
                    data = torch.load(self.path, map_location="cpu", weights_only=True, mmap=self._mapped)
                except Exception as error:  # a pickle with code in it, or not a torch file at all
                    raise ConversionError(f"{self.path} is not a readable weights file: {error}") from error
                self._tensors = _unwrap(data, self.path)
        return self._tensors

    def names(self) -> list[str]:
        return list(self._open())

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._open()[key]

    def meta(self) -> dict[str, torch.Tensor]:
        """Every tensor as a meta tensor (shape and dtype, no data); non-tensor entries are left out."""
        if self.is_safetensors:
            return self._open().meta()
        return {
            k: torch.empty(v.shape, dtype=v.dtype, device="meta")
            for k, v in self._open().items()
            if isinstance(v, torch.Tensor)
        }

    def release(self) -> None:
        """Unmap what was read, so its pages leave memory; a file that could not be mapped stays loaded."""
        if self._mapped:
            self._tensors = None


class _SafetensorsFile(Mapping):
    def __init__(self, path: Path):
        from safetensors import safe_open

        self._file = safe_open(str(path), framework="pt", device="cpu")

    def __getitem__(self, key):
        return self._file.get_tensor(key)

    def __iter__(self):
        return iter(self._file.keys())

    def __len__(self):
        return len(self._file.keys())

    def meta(self) -> dict[str, torch.Tensor]:
        tensors, names = {}, self._file.keys()
        for key in names:
            piece = self._file.get_slice(key)
            tensors[key] = torch.empty(piece.get_shape(), dtype=SAFETENSORS_DTYPES[piece.get_dtype()], device="meta")
        return tensors


class ShardedWeights:
    """Several weight files seen as one state dict (a model folder's shards), each file opened when needed."""

    def __init__(self, paths: list[Path]):
        self.files = [WeightFile(p) for p in paths]
        self._where: dict[str, WeightFile] = {}
        self._meta: dict[str, torch.Tensor] = {}
        for file in self.files:
            for key, value in file.meta().items():
                self._where[key] = file
                self._meta[key] = value
            file.release()

    def meta(self) -> dict[str, torch.Tensor]:
        return dict(self._meta)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self._where[key][key]

    def release(self) -> None:
        for file in self.files:
            file.release()


def original_weight_files(model_dir: Path) -> list[Path]:
    """The weights of a released model folder: the shards its index names, else the single files there."""
    index_files = sorted(model_dir.glob("*.index.json"))
    if index_files:
        names = sorted(set(json.loads(index_files[0].read_text())["weight_map"].values()))
        return [model_dir / name for name in names]
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not files:
        raise ConversionError(f"{model_dir} has no weights (pytorch_model*.bin or *.safetensors)")
    return files


def write_sharded_safetensors(
    output_dir: Path,
    planned: Mapping[str, torch.Tensor],
    make: Callable[[str], torch.Tensor],
    total_parameters: int,
    max_shard_size: int | str = DEFAULT_SHARD_SIZE,
    after_tensor: Callable[[], None] | None = None,
    after_shard: Callable[[], None] | None = None,
) -> list[Path]:
    """Write the tensors `planned` (key -> meta tensor of the output's shape and dtype, in saving order) as
    `save_pretrained` would, calling `make(key)` for each value only while its shard is written, `after_tensor()`
    once each is made and `after_shard()` once a shard is on disk (to let go of the inputs read for them).
    Returns the files written."""
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    output_dir.mkdir(parents=True, exist_ok=True)
    split = split_torch_state_dict_into_shards(
        dict(planned), filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    written = []
    for filename, keys in split.filename_to_tensors.items():
        shard = {}
        for key in keys:
            value = make(key)
            if value.shape != planned[key].shape or value.dtype != planned[key].dtype:
                raise AssertionError(f"{key}: made {value.dtype} {tuple(value.shape)}, planned {planned[key]}")
            shard[key] = value.contiguous()
            del value
            if after_tensor is not None:
                after_tensor()
        save_file(shard, str(output_dir / filename), metadata={"format": "pt"})
        del shard
        if after_shard is not None:
            after_shard()
        gc.collect()
        written.append(output_dir / filename)
        logger.info("wrote %s", filename)
    if split.is_sharded:
        index = {
            "metadata": {"total_parameters": total_parameters, **split.metadata},
            "weight_map": split.tensor_to_filename,
        }
        (output_dir / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return written


__all__ = [
    "ConversionError",
    "ShardedWeights",
    "WeightFile",
    "original_weight_files",
    "write_sharded_safetensors",
]
