"""Trainer checkpoints that appear whole, and a resume that never picks a torn one.

transformers' Trainer (5.x) writes `checkpoint-N` in place: the weights, then the optimizer, scheduler and RNG
states, and `trainer_state.json` last. A run killed (SIGTERM, out of memory) or stopped by a full disk in the
middle leaves a `checkpoint-N` without its state or with a weights file cut short; the Trainer's resume takes the
highest step it finds, so every rerun failed on it until someone deleted it by hand. (transformers 4.36-4.38
staged checkpoints as `tmp-checkpoint-N` and renamed them, then dropped it over multi-node file systems.)

Here:
* a new checkpoint is written under `.staging/checkpoint-N` in the same output folder and renamed to
  `checkpoint-N` by the saving process once every process has written its part (`LlamaVidTrainer` routes the
  Trainer's own `_save_checkpoint` there), so a `checkpoint-N` is always whole;
* before a resume, every checkpoint folder a run of any version may have left torn (no or a damaged
  `trainer_state.json`, no weights, a weights file or shard missing or cut short, a staged or `tmp-` folder) is
  renamed `incomplete-checkpoint-N` with a warning: set aside, never deleted, and no longer matched by the
  Trainer's `checkpoint-*` rotation or resume. Training resumes from the newest complete checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
import zipfile
from pathlib import Path

from ..atomic_files import replace_folder

logger = logging.getLogger(__name__)

STAGING_FOLDER = ".staging"
SET_ASIDE_PREFIX = "incomplete-"
TRAINER_STATE = "trainer_state.json"  # transformers.trainer.TRAINER_STATE_NAME, written last by every version
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_OLD_STAGING = re.compile(r"^tmp-(checkpoint-\d+)$")  # transformers 4.36-4.38
_TORCH_FILES = (".bin", ".pt", ".pth")  # torch.save's zip format: a file cut short has no central directory
_WEIGHTS_DIRS = ("global_step", "pytorch_model_fsdp")  # DeepSpeed's and FSDP's sharded states


def step_of(folder: Path) -> int | None:
    match = _CHECKPOINT.match(folder.name)
    return int(match.group(1)) if match else None


def _safetensors_whole(path: Path) -> bool:
    """The header parses and its last tensor ends where the file does (a cut-short file ends earlier)."""
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError):
        return False
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    return path.stat().st_size == 8 + length + max(ends, default=0)


def checkpoint_problem(folder: Path) -> str | None:
    """Why the Trainer could not resume from `folder`, in a few words; None when it is whole."""
    state = folder / TRAINER_STATE
    if not state.is_file():
        return f"no {TRAINER_STATE}"
    try:
        json.loads(state.read_text())["global_step"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{TRAINER_STATE} is damaged"
    entries = list(folder.iterdir())
    weights = [p for p in entries if p.suffix == ".safetensors" or (p.suffix == ".bin" and p.name != "training_args.bin")]
    weights += [p for p in entries if p.is_dir() and p.name.startswith(_WEIGHTS_DIRS)]
    if not weights:
        return "no weights"
    for index in folder.glob("*.index.json"):
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (OSError, ValueError, KeyError, AttributeError):
            return f"{index.name} is damaged"
        missing = sorted(name for name in shards if not (folder / name).is_file())
        if missing:
            return f"{missing[0]} (listed in {index.name}) is missing"
    for path in entries:
        if path.suffix == ".safetensors" and not _safetensors_whole(path):
            return f"{path.name} is cut short"
        if path.suffix in _TORCH_FILES and path.is_file() and not zipfile.is_zipfile(path):
            return f"{path.name} is cut short"
    return None


def _aside_name(output_dir: Path, name: str) -> Path:
    target = output_dir / f"{SET_ASIDE_PREFIX}{name}"
    count = 1
    while target.exists():
        count += 1
        target = output_dir / f"{SET_ASIDE_PREFIX}{name}.{count}"
    return target


def _set_aside(folder: Path, output_dir: Path, name: str, reason: str) -> Path:
    target = _aside_name(output_dir, name)
    os.replace(folder, target)
    logger.warning("%s is incomplete (%s): set aside as %s", folder, reason, target.name)
    return target


def set_aside_incomplete(output_dir: Path) -> list[Path]:
    """Rename every torn checkpoint folder of `output_dir` to `incomplete-<name>`; returns the new paths."""
    output_dir = Path(output_dir)
    moved = []
    if not output_dir.is_dir():
        return moved
    staging = output_dir / STAGING_FOLDER
    if staging.is_dir():
        for folder in sorted(staging.iterdir()):
            moved.append(_set_aside(folder, output_dir, folder.name, "a save that did not finish"))
        staging.rmdir()
    for folder in sorted(output_dir.iterdir()):
        old = _OLD_STAGING.match(folder.name)
        if old and folder.is_dir():
            moved.append(_set_aside(folder, output_dir, old.group(1), "a save that did not finish"))
        elif step_of(folder) is not None and folder.is_dir():
            problem = checkpoint_problem(folder)
            if problem:
                moved.append(_set_aside(folder, output_dir, folder.name, problem))
    return moved


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The `checkpoint-N` folder of the highest step, or None."""
    if not Path(output_dir).is_dir():
        return None
    folders = [p for p in Path(output_dir).iterdir() if step_of(p) is not None and p.is_dir()]
    return max(folders, key=step_of, default=None)


def resumable_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint of `output_dir` after torn ones are set aside (by the main process; the
    others wait for it), or None to start from the beginning."""
    from .distributed import is_main_process, wait_for_everyone

    if is_main_process():
        set_aside_incomplete(output_dir)
    wait_for_everyone()
    return latest_checkpoint(output_dir)


def staging_root(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / STAGING_FOLDER


def publish_checkpoint(staged: Path, final: Path) -> None:
    """Rename a finished staged checkpoint into place. A folder already there (the same step saved again, as
    the Trainer would overwrite it) is replaced: moved into the staging folder, then removed."""
    replace_folder(staged, final, aside=staged.with_name(f"{staged.name}.replaced"))
    with contextlib.suppress(OSError):  # empty unless another save is being staged beside it
        staged.parent.rmdir()


__all__ = [
    "SET_ASIDE_PREFIX",
    "STAGING_FOLDER",
    "checkpoint_problem",
    "latest_checkpoint",
    "publish_checkpoint",
    "resumable_checkpoint",
    "set_aside_incomplete",
    "staging_root",
    "step_of",
]
