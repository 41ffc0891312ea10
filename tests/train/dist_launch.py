"""`llamavid` for one process of the two-process tests (run by torchrun, `accelerate launch` or `deepspeed`).

Two changes to the libraries, for a CPU test machine only:

* DeepSpeed's shared-memory collectives op is compiled at every process-group start on a CPU (20-100 s and about
  4 GB the first time on a machine); marked incompatible, DeepSpeed does the collectives through gloo instead.
* accelerate turns an FSDP config into DDP when the processes run on CPUs (its FSDP branch lists only
  accelerator devices), although torch's FSDP2 (`fully_shard`) works there with gloo. Here a CPU run given an
  FSDP plugin becomes FSDP. This leans on accelerate's internals; the tests check the distributed type each
  stage records, so a change there fails loudly instead of quietly testing DDP.
"""

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


if __name__ == "__main__":
    turn_off_shm_op()
    fsdp_on_cpu()
    from llamavid.cli import main

    sys.exit(main(sys.argv[1:]))
