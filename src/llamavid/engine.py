"""Compatibility alias: `llamavid.engine` is `llamavid.inference.engine` (the public API's old import path)."""

from .inference.engine import *  # noqa: F403
from .inference.engine import __all__  # noqa: F401
