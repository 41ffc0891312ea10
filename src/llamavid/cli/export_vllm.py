"""`llamavid export-vllm SRC OUT`: a llamavid model folder made ready for vLLM (see the README's serving section)."""

from __future__ import annotations

import argparse


def register(commands) -> None:
    parser = commands.add_parser("export-vllm", help=run.__doc__, description=run.__doc__)
    parser.add_argument("source", metavar="SRC", help="llamavid model folder (from `llamavid convert`)")
    parser.add_argument("out", metavar="OUT", help="folder to write; serve it with vLLM's --model OUT")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Copy a llamavid folder with vLLM's placeholder tokens, Jinja chat template and video loader added."""
    from ..integrations.vllm_plugin.export import export_for_vllm

    out = export_for_vllm(args.source, args.out)
    print(f"vLLM model folder: {out}")
    return 0
