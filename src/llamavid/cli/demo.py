"""`llamavid demo`: questions about a short video, answered by the bundled demo model, offline."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

MAX_NEW_TOKENS = 48


def register(commands) -> None:
    parser = commands.add_parser("demo", help=run.__doc__, description=run.__doc__)
    parser.add_argument("--video", help="your own synthetic-style video (default: a bundled sample)")
    parser.add_argument("--prompt", action="append", help="a question (repeat for several); default: the sample's")
    parser.add_argument("--interactive", action="store_true", help="ask your own questions (/video PATH, /text, /exit)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Chat about a short synthetic video with the bundled demo model (SmolLM2 + a toy vision side), offline."""
    from ..errors import UsageError
    from ..inference.settings import GenerationSettings
    from ..toy.demo import DemoUnavailable, load_demo_engine, sample_videos
    from .repl import Conversation

    if args.video is not None and not Path(args.video).is_file():
        raise UsageError(f"no such video: {args.video}")
    video, prompts = args.video, args.prompt
    if video is None:
        samples = sample_videos()
        if not samples:
            raise DemoUnavailable("no sample videos in this installation")
        video = str(samples[0]["video"])
        prompts = prompts or samples[0]["questions"]
    # peft asks transformers a deprecated question on every load; it is not the user's concern
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    engine = load_demo_engine()
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)
    conversation = Conversation(engine, settings, media=video, remember=False, transcript=True)
    conversation.notice(f"video: {video}")
    if args.interactive:
        return conversation.interact()
    for question in prompts or ["What colour is the circle? Answer with one word."]:
        conversation.notice(f"USER: {question}")
        conversation.ask(question)
    return 0
