"""`llamavid` for one process of the two-process tests (run by torchrun, `accelerate launch` or `deepspeed`).

Two changes to the libraries, for a CPU test machine only:

* DeepSpeed's shared-memory collectives op is compiled at every process-group start on a CPU (20-100 s and about
  4 GB the first time on a machine); marked incompatible, DeepSpeed does the collectives through gloo instead.
* accelerate turns an FSDP config into DDP when the processes run on CPUs (its FSDP branch lists only
  accelerator devices), although torch's FSDP2 (`fully_shard`) works there with gloo. Here a CPU run given an
  FSDP plugin becomes FSDP. This leans on accelerate's internals; the tests check the distributed type each
  stage records, so a change there fails loudly instead of quietly testing DDP.
"""

import atexit
import json
import os
import resource
import sys


def turn_off_shm_op() -> None:
    try:
        import deepspeed.ops
    except ImportError:
        return
    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def fsdp_on_cpu() -> None:
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def init(self, *args, fsdp_plugin=None, **kwargs):
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = init


def record_peak_memory(folder: str) -> None:
    """At exit, this process's peak resident set in `folder/rank-N.json` (benchmarks/train_distributed.py)."""

    def write():
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        path = os.path.join(folder, f"rank-{os.environ.get('RANK', '0')}.json")
        with open(path, "w") as handle:
            json.dump({"peak_rss_mb": round(peak_mb, 1)}, handle)

    atexit.register(write)


if __name__ == "__main__":
    if os.environ.get("LLAMAVID_PEAK_MEMORY_DIR"):
        record_peak_memory(os.environ["LLAMAVID_PEAK_MEMORY_DIR"])
    turn_off_shm_op()
    fsdp_on_cpu()
    from llamavid.cli import main

    sys.exit(main(sys.argv[1:]))
