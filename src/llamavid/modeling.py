"""Compatibility alias: `llamavid.modeling` is `llamavid.model.modeling` (the public API's old import path)."""

from .model.modeling import *  # noqa: F403
from .model.modeling import __all__  # noqa: F401
