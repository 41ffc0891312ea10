"""`llamavid make-synthetic`: the toy moving-shapes video QA set (`llamavid.toy.synthetic`)."""

from __future__ import annotations

import argparse
import json


def register(commands) -> None:
    from ..toy.synthetic import SyntheticSettings

    parser = commands.add_parser("make-synthetic", help=run.__doc__, description=run.__doc__)
    parser.add_argument("out", help="output folder")
    parser.add_argument("--videos", type=int, default=SyntheticSettings.num_videos, help="training videos")
    parser.add_argument("--heldout", type=int, default=SyntheticSettings.heldout_videos, help="held-out videos")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Write the moving-shapes video QA set (LLaVA-format JSON + videos) for training and evaluation."""
    from ..toy.synthetic import SyntheticSettings, generate

    meta = generate(args.out, SyntheticSettings(num_videos=args.videos, heldout_videos=args.heldout, seed=args.seed))
    meta.pop("tracks")
    print(json.dumps(meta))
    return 0
