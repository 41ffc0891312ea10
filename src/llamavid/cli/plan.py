"""`llamavid plan`: what a question will need in memory, next to what the device has, before anything loads.

Also the home of the memory flags that `chat`, `serve` and `eval run` share (`add_memory_flags`).
"""

from __future__ import annotations

import argparse

KV_CACHE_HELP = (
    "KV cache precision: auto (the model's dtype), int8 or int4 (quantized with HQQ: about half or a quarter of "
    "the memory of a long prompt's cache, answers close to bf16)"
)


def add_memory_flags(parser: argparse.ArgumentParser) -> None:
    """`--kv-cache-dtype` (vLLM's name for it)."""
    from ..inference.kv_cache import KV_CACHE_DTYPES

    parser.add_argument("--kv-cache-dtype", default="auto", choices=list(KV_CACHE_DTYPES), help=KV_CACHE_HELP)


def register(commands) -> None:
    parser = commands.add_parser("plan", help=run.__doc__, description=run.__doc__)
    parser.add_argument("--model", required=True, help="llamavid model folder, or a hub name")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--features", help="movie feature file (llamavid extract-features, or the original's .pkl)")
    source.add_argument("--video", help="video file or folder of frames")
    source.add_argument("--image", help="image file")
    parser.add_argument("--prompt", default="", help="the question (its length counts)")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="longest answer, in tokens (default 512)")
    parser.add_argument("--max-frames", type=int, help="at most this many frames")
    parser.add_argument("--fps", type=float, help="video frames per second (default: the model's, 1)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a torch device name")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16")
    bits = parser.add_mutually_exclusive_group()
    bits.add_argument("--load-4bit", action="store_true", help="plan for 4-bit LLM weights")
    bits.add_argument("--load-8bit", action="store_true", help="plan for 8-bit LLM weights")
    add_memory_flags(parser)
    parser.set_defaults(run=run)


def check_args(args: argparse.Namespace, question: str, max_new_tokens: int):
    """The memory plan of a chat-like command's question (`MemoryPlanError` if it cannot fit)."""
    from ..inference.memory_plan import check_before_loading

    return check_before_loading(
        args.model,
        question,
        max_new_tokens,
        device=args.device,
        dtype=args.dtype,
        bits=4 if args.load_4bit else 8 if args.load_8bit else None,
        kv_cache_dtype=args.kv_cache_dtype,
        features=args.features,
        video=args.video,
        image=args.image,
        fps=args.fps,
        max_frames=args.max_frames,
    )


def run(args: argparse.Namespace) -> int:
    """Print the memory a question needs (weights, features, question stage, KV cache, prefill) and what the
    device has; exit 2 with the settings that would fit when it does not."""
    from ..inference.memory_plan import MemoryPlanError

    try:
        plan = check_args(args, args.prompt, args.max_new_tokens)
    except MemoryPlanError as error:
        print(error.plan.table())
        raise
    print(plan.table())
    return 0
