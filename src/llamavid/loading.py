"""Compatibility alias: `llamavid.loading` is `llamavid.inference.loading` (the public API's old import path)."""

from .inference.loading import *  # noqa: F403
from .inference.loading import __all__  # noqa: F401
