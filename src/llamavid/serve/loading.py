"""Which engine `llamavid serve` runs: a model folder, or the bundled demo model.

The trained demo model is another piece of work; `llamavid.demo` will provide `load_demo_engine()`. Until it
does, `default_engine` falls back to a tiny random model, loudly, so that the server, the API and the web page
can be tried (and tested) on a fresh machine with nothing downloaded.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("llamavid.serve")

TINY_NAME = "llamavid-tiny-random"


def default_engine(**engine_options):
    """(engine, model id) for a server started without --model."""
    from .. import demo

    load_demo_engine = getattr(demo, "load_demo_engine", None)
    if load_demo_engine is not None:
        return load_demo_engine(**engine_options), "llamavid-demo"
    return tiny_random_engine(**engine_options), TINY_NAME


def tiny_random_engine(**engine_options):
    from ..engine import ChatEngine
    from ..testing import tiny_model_and_processor

    logger.warning(
        "no --model given and no trained demo model is bundled yet: serving a TINY RANDOM model whose answers "
        "are noise (use --model DIR for a real one)"
    )
    model, processor = tiny_model_and_processor()
    return ChatEngine(model, processor, **engine_options)
