"""The learnability run: stage 0 + stages 1-2 of recipes/tiny-synthetic.yaml on the synthetic set, then
held-out exact-match accuracy. Prints one JSON line. Seconds are process CPU seconds at `--threads` torch
threads (`train_s`: stages 1 + 2, `stage0_s`: stage 0); `train_wall_s` is wall time on a possibly shared
machine.

    python benchmarks/learn_synthetic.py [--seed 0] [--data DIR] [--stage2-steps N] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

RECIPE = Path(__file__).parents[1] / "recipes" / "tiny-synthetic.yaml"


def learn(data: Path, out: Path, seed: int, stage1_steps: int | None = None, stage2_steps: int | None = None,
          stage0_steps: int | None = None) -> dict:
    """Run the recipe on `data` (steps: the recipe's unless given); figures as the JSON line prints them."""
    from llamavid.train.recipe import load_recipe
    from llamavid.train.run import run_recipe

    overrides = [f"seed={seed}", f"output_dir={out}", f"prepare.stage0.data_dir={data}", f"prepare.stage0.seed={seed}",
                 f"evaluate.records={data / 'heldout.json'}", f"evaluate.video_folder={data / 'videos'}"]
    for key, steps in (("prepare.stage0.steps", stage0_steps), ("stages.stage1.training.max_steps", stage1_steps),
                       ("stages.stage2.training.max_steps", stage2_steps)):
        if steps is not None:
            overrides.append(f"{key}={steps}")
    for stage in ("stage1", "stage2"):
        overrides += [f"stages.{stage}.data.data_path={data / 'train.json'}",
                      f"stages.{stage}.data.video_folder={data / 'videos'}"]
    figures = run_recipe(load_recipe(RECIPE, overrides))
    evaluation = figures["evaluation"]
    meta = json.loads((data / "meta.json").read_text())
    return {
        "accuracy": evaluation["accuracy"],
        "colour_accuracy": evaluation.get("colour_accuracy"),
        "shape_accuracy": evaluation.get("shape_accuracy"),
        "direction_accuracy": evaluation.get("direction_accuracy"),
        "temporal_accuracy": evaluation.get("order_accuracy"),
        "majority_baseline": meta["majority_baseline"]["overall"],
        "stage0_s": figures["stage0"]["stage0_cpu_s"],
        "stage0_heldout_object_patch_accuracy": figures["stage0"].get("heldout_object_patch_accuracy"),
        "train_s": figures["stage1"]["train_cpu_s"] + figures["stage2"]["train_cpu_s"],
        "train_wall_s": figures["stage1"]["train_s"] + figures["stage2"]["train_s"],
        "steps": figures["stage1"]["steps"] + figures["stage2"]["steps"],
        "seed": seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="a set written by `llamavid make-synthetic` (default: generate)")
    parser.add_argument("--stage0-steps", type=int, help="default: the recipe's")
    parser.add_argument("--stage1-steps", type=int, help="default: the recipe's")
    parser.add_argument("--stage2-steps", type=int, help="default: the recipe's")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from llamavid.toy.synthetic import SyntheticSettings, generate

            data = Path(tmp) / "data"
            generate(data, SyntheticSettings(seed=args.seed))
        print(json.dumps(learn(data, Path(tmp) / "run", args.seed, args.stage1_steps, args.stage2_steps,
                               args.stage0_steps)))


if __name__ == "__main__":
    main()
