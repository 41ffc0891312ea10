"""Which engine `llamavid serve` runs: a model folder, or the bundled demo model.

Without `--model` the server runs the demo model (`llamavid.toy.demo`). Where it cannot load (SmolLM2 not
installed, or a checkout without the demo weights), `default_engine` falls back to a tiny random model, loudly,
so that the server, the API and the web page can still be tried.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("llamavid.serve")

TINY_NAME = "llamavid-tiny-random"
DEMO_NAME = "llamavid-demo"


def default_engine(**engine_options):
    """(engine, model id) for a server started without --model."""
    from ..toy.demo import DemoUnavailable, load_demo_engine

    try:
        return load_demo_engine(**engine_options), DEMO_NAME
    except DemoUnavailable as error:
        logger.warning("the demo model cannot load (%s)", error)
    return tiny_random_engine(**engine_options), TINY_NAME


def tiny_random_engine(**engine_options):
    from ..inference.engine import ChatEngine
    from ..testing import tiny_model_and_processor

    logger.warning(
        "no --model given and the demo model cannot load: serving a TINY RANDOM model whose answers are noise "
        "(use --model DIR for a real one)"
    )
    model, processor = tiny_model_and_processor()
    return ChatEngine(model, processor, **engine_options)
