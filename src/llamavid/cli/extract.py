"""`llamavid extract-features`: vision features of whole videos, once, for movie chat and long-video training."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(commands) -> None:
    parser = commands.add_parser("extract-features", help=run.__doc__, description=run.__doc__)
    parser.add_argument(
        "source",
        help="a video file, a folder of videos (searched recursively), or with --movienet-files a folder of "
        "MovieNet keyframe archives <imdb>.tar",
    )
    parser.add_argument("--model", required=True, help="llamavid model folder or hub name whose vision tower to use")
    parser.add_argument("--out", required=True, help="output folder (one .safetensors per video)")
    parser.add_argument(
        "--subtitles", help=".srt/.vtt for a single video (default: the one beside each video)"
    )
    parser.add_argument(
        "--transcribe",
        nargs="?",
        const="openai/whisper-large-v3",
        metavar="WHISPER",
        help="transcribe videos without subtitles with a Whisper model id or local folder "
        "(default openai/whisper-large-v3); the transcript is written as OUT/<name>.srt",
    )
    parser.add_argument(
        "--movienet-files",
        metavar="FILES_DIR",
        help="MovieNet files folder (shot/<imdb>.txt, meta/<imdb>.json, subtitle/<imdb>.srt): SOURCE is then a "
        "folder of <imdb>.tar keyframe archives and every keyframe is kept",
    )
    parser.add_argument(
        "--fps", type=float, help="frames per second to keep from videos (default: the model's video_fps, 1 for the releases)"
    )
    parser.add_argument("--batch-size", type=int, default=32, help="frames per vision-tower batch")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Extract vision features of videos or MovieNet movies for movie chat (resumable; data-parallel under accelerate
    launch). A video that cannot be read is reported and skipped: the exit status is 1 and the failures are listed
    at the end; a rerun retries only those."""
    from accelerate import PartialState

    from ..errors import UsageError
    from ..inference.engine import ChatEngine
    from ..inference.extract import extract_all
    from ..inference.settings import Sampling
    from .output_folders import check_writable_folder

    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.movienet_files and (args.subtitles or args.fps is not None):
        raise UsageError(
            "--movienet-files takes every keyframe and each movie's subtitle/<imdb>.srt: drop --subtitles and --fps"
        )
    if args.movienet_files and args.transcribe:
        raise UsageError("--movienet-files reads each movie's subtitle/<imdb>.srt: drop --transcribe")
    source, out_dir = Path(args.source), check_writable_folder(args.out, "--out")
    state = PartialState()
    device = args.device if args.device != "auto" or state.num_processes == 1 else str(state.device)
    engine = ChatEngine.from_pretrained(args.model, device=device, dtype=args.dtype)
    progress = False if args.no_progress else None
    if args.movienet_files:
        return _run_movienet(args, engine, state, progress)
    transcriber = None
    if args.transcribe:
        from ..inference.transcribe import Transcriber

        transcriber = Transcriber(args.transcribe, device=engine.device)
    results = extract_all(
        engine.encoder,
        source,
        out_dir,
        Path(args.subtitles) if args.subtitles else None,
        Sampling(fps=args.fps),
        args.batch_size,
        state.process_index,
        state.num_processes,
        progress,
        transcriber,
    )
    return _report(results, state.process_index)


def _run_movienet(args: argparse.Namespace, engine, state, progress: bool | None) -> int:
    from ..inference.extract_movienet import extract_movienet

    results = extract_movienet(
        engine.encoder,
        Path(args.source),
        Path(args.movienet_files),
        Path(args.out),
        args.batch_size,
        state.process_index,
        state.num_processes,
        progress,
    )
    return _report(results, state.process_index)


def _report(results, process_index: int) -> int:
    """Print each output as it is done or skipped and each failure as it happens, then the counts and the list of
    failures; exit status 1 when anything failed (a rerun tries those again and skips the rest)."""
    counts = {"done": 0, "skipped": 0, "failed": 0}
    failures = []
    for path, status, error in results:
        counts[status] += 1
        if error:
            failures.append(error)
            print(f"failed: {error}", file=sys.stderr, flush=True)
        else:
            print(f"{status}: {path}", flush=True)
    print(
        f"process {process_index}: {counts['done']} extracted, {counts['skipped']} already done, "
        f"{counts['failed']} failed{' (run again to retry them):' if failures else ''}",
        file=sys.stderr,
    )
    for error in failures:
        print(f"failed: {error}", file=sys.stderr)
    return 1 if failures else 0
