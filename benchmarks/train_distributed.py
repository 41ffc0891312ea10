"""Samples a second and peak memory a rank of the toy recipe's stage 2 (LLM, Q-Former and projectors train) on
one process and on two processes under DDP, DeepSpeed ZeRO-2, ZeRO-3 and FSDP2, all at global batch 8. Prints
one JSON line.

    python benchmarks/train_distributed.py [--steps 6] [--videos 32]

The two processes run on this machine's CPUs with gloo on 127.0.0.1, so on a CPU these figures show what each
path costs (communication, sharding, gathering parameters, start-up of the engine), not a speed-up: the two
ranks share the cores one process would use. Each run is a separate launch (tests/train/dist_launch.py, which
turns off DeepSpeed's compiled shared-memory op and lets accelerate use FSDP on a CPU); the samples a second
come from the stage's own training time (`train_s` of its figures), peak memory is each rank's peak resident
set (model, optimiser, activations, the Python runtime and its imports).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
LAUNCHER = ROOT / "tests" / "train" / "dist_launch.py"
GLOBAL_BATCH = 8


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def command(path: str, work: Path) -> list[str]:
    port = str(free_port())
    if path == "1 process":
        return [sys.executable]
    if path == "fsdp2":
        config = yaml.safe_load((ROOT / "recipes" / "accelerate" / "fsdp.yaml").read_text())
        config.update(num_processes=2, mixed_precision="no", main_process_ip="127.0.0.1")
        config_file = work / "fsdp.yaml"
        config_file.write_text(yaml.safe_dump(config))
        return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file),
                "--main_process_port", port]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
            "--master_port", port]


def run_path(path: str, data: Path, work: Path, steps: int) -> dict:
    from llamavid.toy.recipes import two_stage_recipe

    ranks = 1 if path == "1 process" else 2
    training = {"max_steps": steps, "per_device_train_batch_size": GLOBAL_BATCH // ranks, "report_to": "none"}
    if path.startswith("zero"):
        training["deepspeed"] = str(ROOT / "recipes" / "deepspeed" / f"{path}.json")
    out = work / path.replace(" ", "-")
    recipe = two_stage_recipe(data, out, **training)
    recipe["stages"] = recipe["stages"][1:]
    recipe["stages"][0].pop("init_adapter")
    recipe_file = work / f"{out.name}.yaml"
    recipe_file.write_text(json.dumps(recipe))
    memory = work / f"{out.name}-memory"
    memory.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu", "LLAMAVID_PEAK_MEMORY_DIR": str(memory),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    result = subprocess.run([*command(path, work), str(LAUNCHER), "train", str(recipe_file)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(f"{path} failed:\n{result.stderr[-4000:]}")
    figures = json.loads((out / "stage2" / "figures.json").read_text())
    peaks = [json.loads(f.read_text())["peak_rss_mb"] for f in sorted(memory.glob("rank-*.json"))]
    return {
        "distributed": figures["distributed"],
        "samples_per_s": round(figures["steps"] * GLOBAL_BATCH / figures["train_s"], 2),
        "train_s": round(figures["train_s"], 2),
        "launch_wall_s": round(time.perf_counter() - start, 1),
        "peak_rss_mb_per_rank": peaks,
        "final_loss": figures["losses"][-1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--videos", type=int, default=32)
    args = parser.parse_args()
    from llamavid.toy.synthetic import SyntheticSettings, generate

    with tempfile.TemporaryDirectory(prefix="llamavid-dist-bench-") as tmp:
        work = Path(tmp)
        generate(work / "data", SyntheticSettings(num_videos=args.videos, heldout_videos=2, seed=3))
        records = len(json.loads((work / "data" / "train.json").read_text()))
        if args.steps * GLOBAL_BATCH > records:
            parser.error(f"--steps {args.steps} x batch {GLOBAL_BATCH} is more than the {records} records")
        paths = ["1 process", "ddp", "zero2", "zero3", "fsdp2"]
        results = {path: run_path(path, work / "data", work, args.steps) for path in paths}
    print(json.dumps({"benchmark": "train_distributed", "recipe": "toy stage 2", "global_batch": GLOBAL_BATCH,
                      "steps": args.steps, "device": "cpu", "paths": results}))


if __name__ == "__main__":
    main()
