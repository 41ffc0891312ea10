"""`llamavid extract-features`: vision features of whole videos, once, for movie chat and long-video training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("extract-features", help=run.__doc__, description=run.__doc__)
    parser.add_argument("source", help="a video file, or a folder of videos (searched recursively)")
    parser.add_argument("--model", required=True, help="llamavid model folder or hub name whose vision tower to use")
    parser.add_argument("--out", required=True, help="output folder (one .safetensors per video)")
    parser.add_argument(
        "--subtitles", help=".srt/.vtt for a single video (default: the one beside each video)"
    )
    parser.add_argument("--fps", type=float, default=1.0, help="frames per second to keep (default 1)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per vision-tower batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Extract vision features of videos for movie chat (resumable; data-parallel under accelerate launch)."""
    from accelerate import PartialState

    from ..errors import UsageError
    from ..inference.engine import ChatEngine
    from ..inference.extract import extract_all

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    source, out_dir = Path(args.source), Path(args.out)
    state = PartialState()
    device = args.device if args.device != "auto" or state.num_processes == 1 else str(state.device)
    engine = ChatEngine.from_pretrained(args.model, device=device, dtype=args.dtype)
    progress = False if args.no_progress else None
    done = skipped = 0
    for path, status in extract_all(
        engine.encoder,
        source,
        out_dir,
        Path(args.subtitles) if args.subtitles else None,
        args.fps,
        args.batch_size,
        state.process_index,
        state.num_processes,
        progress,
    ):
        done += status == "done"
        skipped += status == "skipped"
        print(f"{status}: {path}", flush=True)
    print(f"process {state.process_index}: {done} extracted, {skipped} already done", file=sys.stderr)
    return 0
