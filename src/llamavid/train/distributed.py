"""What a recipe run needs to know about the other processes of a multi-process launch (torchrun, `accelerate
launch`, `deepspeed`): who is the main process, how to wait for it, and whether a stage shards its parameters.

The Trainer sets up the process group only when its first stage starts; a recipe's prepare steps (stage 0) run
before that and must run once, on the main process, while the others wait. So a launch with `WORLD_SIZE > 1`
starts the process group here, with torch's default backend for the device (gloo on a CPU, NCCL for CUDA);
accelerate and DeepSpeed take over a group that is already there.

Sharding matters in three places: a sharded model (FSDP, ZeRO-3) cannot serve the data loader's frozen-tower
features (the tower's parameters are partitioned, and gathering them there puts the ranks' collectives out of
step), cannot run the shared-prefix shortcut (it calls the tower and LLM outside the wrapped forward), and
cannot be re-wrapped for a second stage in the same process (ZeRO-2 too: its hooks stay on the parameters).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0


def start_process_group() -> None:
    """Join the launch's process group now (a launcher set `WORLD_SIZE > 1`), so prepare steps can wait."""
    if world_size() > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group()


def wait_for_everyone() -> None:
    """A barrier, where there are other processes: what one process saved is then there for all of them."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("true", "1")


def uses_deepspeed(training: dict) -> bool:
    return bool(training.get("deepspeed")) or _env_flag("ACCELERATE_USE_DEEPSPEED")


def uses_fsdp(training: dict) -> bool:
    """FSDP from the stage's own `fsdp` argument or from `accelerate launch --config_file recipes/accelerate/fsdp.yaml`."""
    return bool(training.get("fsdp")) or _env_flag("ACCELERATE_USE_FSDP")


def zero_stage(training: dict) -> int | None:
    """The ZeRO stage of the stage's DeepSpeed config (a JSON file or an inline dict), None without DeepSpeed."""
    config = training.get("deepspeed")
    if not config:
        return None
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text())
    return int(config.get("zero_optimization", {}).get("stage", 0))


def shards_parameters(training: dict) -> bool:
    """FSDP or ZeRO-3: each rank holds only a part of every parameter during the stage."""
    return uses_fsdp(training) or (zero_stage(training) or 0) >= 3


def wraps_for_one_stage(training: dict) -> bool:
    """DeepSpeed or FSDP: the wrapping cannot be undone, so the process can train this one stage only."""
    return uses_deepspeed(training) or uses_fsdp(training)


def distributed_figures(trainer) -> dict:
    """What really ran (accelerate falls back to DDP where FSDP is not supported, e.g. on a CPU): the
    distributed type, the number of processes and the ZeRO stage or FSDP version."""
    state = trainer.accelerator.state
    figures = {"type": str(state.distributed_type.value), "world_size": trainer.accelerator.num_processes}
    deepspeed_plugin = getattr(state, "deepspeed_plugin", None)
    if deepspeed_plugin is not None:
        figures["zero_stage"] = deepspeed_plugin.zero_stage
    fsdp_plugin = getattr(state, "fsdp_plugin", None)
    if fsdp_plugin is not None:
        figures["fsdp_version"] = fsdp_plugin.fsdp_version
    return figures


__all__ = [
    "distributed_figures",
    "is_main_process",
    "shards_parameters",
    "start_process_group",
    "uses_deepspeed",
    "uses_fsdp",
    "wait_for_everyone",
    "world_size",
    "wraps_for_one_stage",
    "zero_stage",
]
