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
    from ..model.configuration import LlamaVidConfig

    out = export_for_vllm(args.source, args.out)
    print(f"vLLM model folder: {out}")
    fps = LlamaVidConfig.from_pretrained(out).video_fps
    if fps != 1.0:  # vLLM's video loader is not told the model; the default rate is the releases' 1 fps
        print(f"this model samples videos at {fps:g} fps: serve it with --media-io-kwargs "
              f"'{{\"video\": {{\"fps\": {fps:g}}}}}'")
    return 0
