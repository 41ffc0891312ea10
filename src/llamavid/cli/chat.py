"""`llamavid chat`: one-shot (`--prompt`) or interactive conversations about an image, a video, a movie's
feature file, or nothing.

stdout carries only the answer (streamed as it is generated); everything else (banners, progress, errors) goes
to stderr, so `llamavid chat --prompt ... > answer.txt` captures exactly the answer.
"""

from __future__ import annotations

import argparse

from .flags import add_settings_flags, settings_from_args
from .plan import add_memory_flags, check_args


def register(commands) -> None:
    from ..inference.settings import GenerationSettings, Sampling

    parser = commands.add_parser("chat", help=run.__doc__, description=run.__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--image", help="image file to talk about")
    source.add_argument("--video", help="video file or folder of frames to talk about")
    source.add_argument(
        "--features", help="movie feature file (llamavid extract-features, or the original's .pkl)"
    )
    parser.add_argument("--model", required=True, help="llamavid model folder, or a hub name (YanweiLi/llama-vid-7b-full-224-video-fps-1)")
    parser.add_argument("--prompt", help="ask this one question, print the answer and exit")
    parser.add_argument("--template", help="chat template (default: the one the model was trained with)")
    add_settings_flags(parser, GenerationSettings)
    add_settings_flags(parser, Sampling)
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a torch device name")
    parser.add_argument(
        "--dtype", default="auto",
        help="auto (the precision the model was saved in: bfloat16 for the releases), float32, float16 or bfloat16",
    )
    bits = parser.add_mutually_exclusive_group()
    bits.add_argument(
        "--load-4bit", action="store_true",
        help="quantize the LLM to 4 bits (bitsandbytes; CUDA or CPU: a quarter of bf16's memory, but on CPU about "
        "8x slower prefill than bf16)",
    )
    bits.add_argument(
        "--load-8bit", action="store_true",
        help="quantize the LLM to 8 bits (bitsandbytes; CUDA or CPU: half of bf16's memory, slower than bf16 on CPU)",
    )
    parser.add_argument("--cache-dir", help="keep vision features on disk here, reused across sessions")
    add_memory_flags(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Chat with a model about an image, a video, a movie, or just text."""
    from ..inference.engine import ChatEngine
    from ..inference.settings import GenerationSettings, Sampling
    from ..model.chat_templates import get_template
    from .repl import Conversation

    settings = settings_from_args(args, GenerationSettings)
    sampling = settings_from_args(args, Sampling)
    if args.template:
        get_template(args.template)  # fail before loading the model
    bits = 4 if args.load_4bit else 8 if args.load_8bit else None
    check_args(args, args.prompt or "", settings.max_new_tokens)  # refuse what cannot fit before loading anything
    engine = ChatEngine.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, bits=bits, cache_dir=args.cache_dir,
        fps=sampling.fps, max_frames=sampling.max_frames, kv_cache_dtype=args.kv_cache_dtype,
    )
    conversation = Conversation(engine, settings, args.template, args.image or args.video or args.features)
    if args.prompt is not None:
        conversation.ask(args.prompt)
        return 0
    return conversation.interact()
