"""The `llamavid` console script: one entry point, one sub-command per job, each in its own module here.

Errors a user can cause (`llamavid.errors.LlamaVidError`: a missing file, a bad option value, a checkpoint that
does not fit, a prompt too long) end with one line on stderr, `llamavid COMMAND: error: ...`, and exit status 2;
any other exception is a bug or a resource problem and keeps its traceback. `LLAMAVID_DEBUG=1` shows the
traceback of user errors too.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import LlamaVidError
from . import chat, convert, demo, export_vllm, extract, plan, serve, synthetic, train
from . import eval as evaluate

COMMANDS = (chat, convert, demo, evaluate, export_vllm, extract, plan, serve, synthetic, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llamavid",
        description="LLaMA-VID: chat with an LLM about images, videos and movies at two tokens a frame.",
    )
    # The `deepspeed` launcher adds --local_rank=N before the sub-command (unless given --no_local_rank); the
    # rank is in the environment (LOCAL_RANK) as well, where accelerate and the Trainer read it.
    parser.add_argument("--local_rank", "--local-rank", type=int, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(commands)
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
    except LlamaVidError as error:
        if os.environ.get("LLAMAVID_DEBUG") == "1":
            raise
        print(f"llamavid {args.command}: error: {error}", file=sys.stderr)
        return 2

