"""`llamavid train`: a recipe's prepare steps and stages (see docs/training.md)."""

from __future__ import annotations

import argparse
import json


def register(commands) -> None:
    parser = commands.add_parser("train", help=run.__doc__, description=run.__doc__)
    parser.add_argument("recipe", help="recipe YAML (recipes/ has one per released model)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted.key=value changes, e.g. stages.stage2.training.max_steps=10"
    )
    parser.add_argument("--only", help="run only this prepare step or stage (stage0, stage1, ...)")
    parser.add_argument("--dry-run", action="store_true", help="check the recipe and print its plan")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train LLaMA-VID from a recipe: `llamavid train RECIPE.yaml [key=value ...]`."""
    import logging

    from ..train.recipe import load_recipe

    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        plan = {"name": recipe.name, "output_dir": recipe.output_dir, "prepare": list(recipe.prepare),
                "stages": [s.name for s in recipe.stages]}
        print(json.dumps(plan))
        return 0
    logging.getLogger("llamavid").setLevel(logging.INFO)
    from ..train.distributed import is_main_process
    from ..train.run import run_recipe

    figures = run_recipe(recipe, only=args.only)
    if is_main_process():  # one line for the launch, not one a process
        print(json.dumps(figures, default=str))
    return 0
