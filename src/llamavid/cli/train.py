"""`llamavid train` and `llamavid make-synthetic`."""

from __future__ import annotations

import argparse
import json


def _train(args: argparse.Namespace) -> int:
    """Train LLaMA-VID from a recipe: `llamavid train RECIPE.yaml [key=value ...]` (see docs/training.md)."""
    import logging

    from ..train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        print(
            json.dumps(
                {
                    "name": recipe.name,
                    "output_dir": recipe.output_dir,
                    "stages": [s.name for s in recipe.stages],
                    "stage0": recipe.stage0 is not None,
                }
            )
        )
        return 0
    logging.getLogger("llamavid").setLevel(logging.INFO)
    from ..train.run import run_recipe

    figures = run_recipe(recipe, only=args.only)
    print(json.dumps(figures, default=str))
    return 0


def _make_synthetic(args: argparse.Namespace) -> int:
    """Write the moving-shapes video QA set (LLaVA-format JSON + videos) for training and evaluation."""
    from ..toy.synthetic import SyntheticSettings, generate

    meta = generate(
        args.out, SyntheticSettings(num_videos=args.videos, heldout_videos=args.heldout, seed=args.seed)
    )
    meta.pop("tracks")
    print(json.dumps(meta))
    return 0


def register(commands) -> None:
    from ..toy.synthetic import SyntheticSettings

    train = commands.add_parser("train", help=_train.__doc__, description=_train.__doc__)
    train.add_argument("recipe", help="recipe YAML (recipes/ has one per released model)")
    train.add_argument(
        "overrides", nargs="*", help="dotted.key=value changes, e.g. stages.stage2.training.max_steps=10"
    )
    train.add_argument("--only", help="run only this stage (stage0, stage1, ...)")
    train.add_argument("--dry-run", action="store_true", help="check the recipe and print its plan")
    train.set_defaults(run=_train)

    synthetic = commands.add_parser(
        "make-synthetic", help=_make_synthetic.__doc__, description=_make_synthetic.__doc__
    )
    synthetic.add_argument("out", help="output folder")
    synthetic.add_argument("--videos", type=int, default=SyntheticSettings.num_videos)
    synthetic.add_argument("--heldout", type=int, default=SyntheticSettings.heldout_videos)
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.set_defaults(run=_make_synthetic)
