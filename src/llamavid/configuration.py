"""Compatibility alias: `llamavid.configuration` is `llamavid.model.configuration` (the public API's old import path)."""

from .model.configuration import *  # noqa: F403
from .model.configuration import __all__  # noqa: F401
