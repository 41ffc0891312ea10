"""The `llamavid` console script: one entry point, one sub-command per job.

User mistakes (a missing file, an unknown option value, an unconvertible checkpoint) end with one line on
stderr and exit status 2; nothing prints a traceback unless `LLAMAVID_DEBUG=1`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from ..media.errors import MediaError

USER_ERRORS: tuple[type[BaseException], ...] = (
    FileNotFoundError,
    ValueError,
    RuntimeError,
    MediaError,
    OSError,
)


def _convert(args: argparse.Namespace) -> int:
    """Convert a released LLaMA-VID model folder (+ EVA-ViT-G and BERT vocab) into a llamavid folder."""
    import torch

    from ..inference.loading import resolve_dtype
    from ..model.convert import ArchitectureHints, convert_checkpoint

    dtype = None if args.dtype == "keep" else resolve_dtype(args.dtype, torch.device("cpu"))
    out = convert_checkpoint(
        model_dir=args.model,
        output_dir=args.out,
        processor_dir=args.processor,
        qformer_vocab=args.qformer_vocab,
        eva_path=args.eva,
        instructblip_path=args.instructblip,
        hints=ArchitectureHints(args.vision_heads, args.vision_blocks, args.qformer_heads),
        chat_template=args.chat_template,
        dtype=dtype,
    )
    print(f"Converted model written to {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    """Chat about a short synthetic video with the bundled demo model (SmolLM2 + a toy vision side), offline."""
    from pathlib import Path

    from ..media import MediaError
    from ..toy.demo import DemoUnavailable, interactive, load_demo_engine, run_demo

    if args.video is not None and not Path(args.video).is_file():
        print(f"error: no such video: {args.video}", file=sys.stderr)
        return 2
    import warnings

    # peft asks transformers a deprecated question on every load; it is not the user's concern
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        engine = load_demo_engine()
        if args.interactive:
            interactive(engine, args.video)
        else:
            run_demo(engine, args.video, args.prompt)
    except (DemoUnavailable, MediaError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _demo_and_exit(args: argparse.Namespace) -> int:
    """`_demo`, then leave the process at once. Seen here, rarely: after the last answer the interpreter's
    shutdown hung with two native threads spinning (the thread pools of the torch work done in the streaming
    thread). Nothing is left to do at that point, so the process exits without it, its output flushed."""
    code = _demo(args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# Sub-commands living in their own packages: each module has `register(commands)` adding its parser(s), with
# `run` set to a function of the parsed arguments. Imported only to build the parser (their heavy imports stay
# inside `run`).
COMMAND_MODULES: tuple[str, ...] = (
    "llamavid.cli.chat",
    "llamavid.cli.extract",
    "llamavid.cli.eval",
    "llamavid.cli.serve",
    "llamavid.cli.train",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamavid",
        description="LLaMA-VID: chat with an LLM about images, videos and movies at two tokens a frame.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)

    convert = commands.add_parser("convert", help=_convert.__doc__, description=_convert.__doc__)
    convert.add_argument(
        "--model", required=True, help="released model folder (config.json, pytorch_model-*.bin)"
    )
    convert.add_argument(
        "--processor", required=True, help="the original's processor/clip-patch14-224 (or -336) folder"
    )
    convert.add_argument("--qformer-vocab", help="bert-base-uncased vocab.txt (default: MODEL/vocab.txt)")
    convert.add_argument(
        "--eva", help="LAVIS eva_vit_g.pth (default: the EVA copy inside the checkpoint, if any)"
    )
    convert.add_argument(
        "--instructblip", help="InstructBLIP Q-Former .pth, for Q-Former weights the folder lacks"
    )
    convert.add_argument("--out", required=True, help="output folder")
    convert.add_argument("--chat-template", default="vicuna_v1", help="template the model was trained with")
    convert.add_argument("--dtype", default="keep", help="keep (as stored), float32, float16 or bfloat16")
    convert.add_argument("--vision-heads", type=int, help="attention heads of a non-standard vision tower")
    convert.add_argument(
        "--vision-blocks", type=int, help="EVA blocks to use (default 39 of EVA-CLIP-g's 40)"
    )
    convert.add_argument("--qformer-heads", type=int, help="attention heads of a non-BERT-base Q-Former")
    convert.set_defaults(run=_convert)

    demo = commands.add_parser("demo", help=_demo.__doc__, description=_demo.__doc__)
    demo.add_argument("--video", help="your own synthetic-style video (default: a bundled sample)")
    demo.add_argument("--prompt", action="append", help="a question (repeat for several); default: the sample's")
    demo.add_argument("--interactive", action="store_true", help="ask your own questions (/video, /text, /exit)")
    demo.set_defaults(run=_demo_and_exit)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if not sys.stderr.isatty():
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    try:
        return args.run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as error:
        if os.environ.get("LLAMAVID_DEBUG") == "1":
            raise
        print(f"llamavid {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
