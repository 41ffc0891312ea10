"""`llamavid serve`: the OpenAI-compatible API and the web demo, on one engine, in one process."""

from __future__ import annotations

import argparse
import logging

from ..serve.settings import MB


def register(commands) -> None:
    parser = commands.add_parser("serve", help=run.__doc__, description=run.__doc__)
    parser.add_argument("--model", help="llamavid model folder (default: the bundled demo model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", help="model id for /v1/models and requests (default: folder name)")
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a torch device name")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16")
    parser.add_argument("--cache-dir", help="keep vision features on disk here, reused across restarts")
    access = parser.add_argument_group("access")
    access.add_argument("--api-key", help="require 'Authorization: Bearer KEY' on /v1 (or set LLAMAVID_API_KEY)")
    access.add_argument("--allowed-local-media-path", action="append", default=[], metavar="DIR",
                        help="let requests name files under DIR (file:// URLs or paths); repeatable; none by default")
    limits = parser.add_argument_group("limits")
    limits.add_argument("--max-body-mb", type=float, default=100.0, help="largest request body (default 100)")
    limits.add_argument("--max-media-mb", type=float, default=64.0, help="largest image or video (default 64)")
    limits.add_argument("--max-frames", type=int, default=64, help="most frames taken from a video (default 64)")
    limits.add_argument("--fps", type=float, default=1.0, help="default video sampling rate (default 1)")
    limits.add_argument("--fetch-timeout", type=float, default=10.0, help="seconds to fetch a media URL")
    limits.add_argument("--default-max-tokens", type=int, default=512, help="answer length when not requested")
    batching = parser.add_argument_group("batching")
    batching.add_argument("--max-batch-size", type=int, default=16, help="requests generated together (default 16)")
    batching.add_argument("--batch-wait-ms", type=float, default=20.0,
                          help="how long a request waits for others to batch with (default 20)")
    parser.add_argument("--no-web", action="store_true", help="serve the API only, no web page at /")
    parser.add_argument("--log-prompts", action="store_true", help="include prompt text in the request log")
    parser.set_defaults(run=run)


def settings_from_args(args: argparse.Namespace, model_name: str):
    from ..serve.settings import ServeSettings

    return ServeSettings(
        model_name=args.served_model_name or model_name,
        allowed_local_media_path=args.allowed_local_media_path,
        api_key=args.api_key,
        max_body_bytes=int(args.max_body_mb * MB),
        max_media_bytes=int(args.max_media_mb * MB),
        max_frames=args.max_frames,
        fps=args.fps,
        fetch_timeout_s=args.fetch_timeout,
        max_batch_size=args.max_batch_size,
        batch_wait_ms=args.batch_wait_ms,
        default_max_tokens=args.default_max_tokens,
        log_prompts=args.log_prompts,
        web=not args.no_web,
    )


def run(args: argparse.Namespace) -> int:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions with images and videos) and a
    web demo at /, from one engine."""
    import os
    from pathlib import Path

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.getLogger("llamavid.serve").setLevel(logging.INFO)
    settings_from_args(args, "check")  # refuse bad flags before loading the model
    options = {"fps": args.fps, "max_frames": args.max_frames}
    if args.model:
        from ..inference.engine import ChatEngine

        engine = ChatEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                            cache_dir=args.cache_dir, **options)
        name = Path(args.model).resolve().name
    else:
        from ..serve.loading import default_engine

        engine, name = default_engine(**options)
    settings = settings_from_args(args, name)

    import uvicorn

    from ..serve.app import create_app

    app = create_app(engine, settings)
    logging.getLogger("llamavid.serve").info(
        "serving %s on http://%s:%d (API under /v1%s)", settings.model_name, args.host, args.port,
        "" if settings.web else "; web page off",
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
