"""Compatibility alias: `llamavid.processing` is `llamavid.model.processing` (the public API's old import path)."""

from .model.processing import *  # noqa: F403
from .model.processing import __all__  # noqa: F401
