"""`llamavid serve`: the OpenAI-compatible API and the web demo, on one engine, in one process.

Without `--model` the server runs the bundled demo model (`llamavid.toy.demo`); where that cannot load (SmolLM2
not installed, or a checkout without the demo weights) it falls back, loudly, to a tiny random model, so that
the API and the page can still be tried.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .flags import add_settings_flags, settings_from_args
from .plan import add_memory_flags

TINY_NAME = "llamavid-tiny-random"
DEMO_NAME = "llamavid-demo"
GRACEFUL_SHUTDOWN_S = 5
logger = logging.getLogger("llamavid.serve")


def register(commands) -> None:
    from ..serve.settings import ServeSettings

    parser = commands.add_parser("serve", help=run.__doc__, description=run.__doc__)
    parser.add_argument("--model", help="llamavid model folder or hub name (default: the bundled demo model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), or a torch device name")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16")
    parser.add_argument("--cache-dir", help="keep vision features on disk here, reused across restarts")
    add_settings_flags(parser, ServeSettings)
    add_memory_flags(parser)
    parser.set_defaults(run=run)


def default_engine(**engine_options):
    """(engine, model id) for a server started without --model."""
    from ..inference.engine import ChatEngine
    from ..toy.demo import DemoUnavailable, load_demo_engine

    try:
        return load_demo_engine(**engine_options), DEMO_NAME
    except DemoUnavailable as error:
        logger.warning("the demo model cannot load (%s)", error)
    from ..toy.tiny import tiny_model_and_processor

    logger.warning(
        "no --model given and the demo model cannot load: serving a TINY RANDOM model whose answers are noise "
        "(use --model DIR for a real one)"
    )
    model, processor = tiny_model_and_processor()
    return ChatEngine(model, processor, **engine_options), TINY_NAME


def serve_settings(args: argparse.Namespace, model_name: str | None = None):
    """The server's settings from its flags; the page's sample video is the bundled demo sample unless given."""
    from ..serve.settings import ServeSettings
    from ..toy.demo import sample_videos

    samples = sample_videos()
    sample = args.sample_video or (samples[0]["video"] if samples else None)
    return settings_from_args(args, ServeSettings, model_name=args.model_name or model_name, sample_video=sample,
                              bind_host=args.host)


def run(args: argparse.Namespace) -> int:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions with images and videos) and a
    web demo at /, from one engine."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    logging.getLogger("llamavid.serve").setLevel(logging.INFO)
    serve_settings(args)  # refuse bad flags before loading the model
    options = {"fps": args.fps, "max_frames": args.max_frames}
    if args.model:
        from ..hub.models import is_hub_name
        from ..inference.engine import ChatEngine

        engine = ChatEngine.from_pretrained(args.model, device=args.device, dtype=args.dtype,
                                            cache_dir=args.cache_dir, **options)
        name = args.model if is_hub_name(args.model) else Path(args.model).resolve().name
    else:
        engine, name = default_engine(cache_dir=args.cache_dir, **options)
    settings = serve_settings(args, name)
    engine.generator.configure(kv_cache_dtype=args.kv_cache_dtype)

    import uvicorn

    from ..serve.app import create_app

    app = create_app(engine, settings)
    logger.info(
        "serving %s on http://%s:%d (API under /v1%s)", settings.model_name, args.host, args.port,
        "" if settings.web else "; web page off",
    )
    # open streams (a browser tab's heartbeat) must not keep a stopped server waiting
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    return 0
