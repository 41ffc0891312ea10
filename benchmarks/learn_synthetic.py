"""Learnability run of issue 11: stage 0 + stages 1-2 of recipes/tiny-synthetic.yaml on the synthetic set, then
held-out exact-match accuracy. Prints one JSON line.

    python benchmarks/learn_synthetic.py [--seed 0] [--data DIR] [--stage2-steps N] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

RECIPE = Path(__file__).parents[1] / "recipes" / "tiny-synthetic.yaml"


def learn(data: Path, out: Path, seed: int, stage1_steps: int, stage2_steps: int, stage0_steps: int) -> dict:
    from llamavid.train.recipe import load_recipe
    from llamavid.train.run import run_recipe

    overrides = [f"seed={seed}", f"output_dir={out}", f"stage0.data_dir={data}", f"stage0.seed={seed}",
                 f"stage0.steps={stage0_steps}", f"evaluate.records={data / 'heldout.json'}",
                 f"evaluate.video_folder={data / 'videos'}", f"stages.stage1.training.max_steps={stage1_steps}",
                 f"stages.stage2.training.max_steps={stage2_steps}"]
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
        "train_s": figures["stage1"]["train_cpu_s"] + figures["stage2"]["train_cpu_s"],
        "train_wall_s": figures["stage1"]["train_s"] + figures["stage2"]["train_s"],
        "steps": figures["stage1"]["steps"] + figures["stage2"]["steps"],
        "seed": seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="a set written by `llamavid make-synthetic` (default: generate)")
    parser.add_argument("--stage0-steps", type=int, default=400)
    parser.add_argument("--stage1-steps", type=int, default=150)
    parser.add_argument("--stage2-steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            from llamavid.train.synthetic import SyntheticSettings, generate

            data = Path(tmp) / "data"
            generate(data, SyntheticSettings(seed=args.seed))
        print(json.dumps(learn(data, Path(tmp) / "run", args.seed, args.stage1_steps, args.stage2_steps,
                               args.stage0_steps)))


if __name__ == "__main__":
    main()
