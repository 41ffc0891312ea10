"""The one base class of the errors a user can cause.

A missing or damaged file, a checkpoint that does not fit, a prompt longer than the context, a bad recipe or a
bad option value all raise a subclass of `LlamaVidError` whose message is one line saying what to fix. The
command line prints exactly those as `llamavid COMMAND: error: MESSAGE` and exits with status 2; every other
exception (a bug, running out of memory) keeps its traceback. Subclasses that also derive from a built-in
(`ValueError`, `FileNotFoundError`) stay catchable by code written against the built-in.
"""

from __future__ import annotations


class LlamaVidError(Exception):
    """Something the user can fix: the message names the file, option or value at fault."""


class UsageError(LlamaVidError, ValueError):
    """An option or argument value that cannot work (a negative temperature, an unknown template name)."""


class ModelLoadError(LlamaVidError, RuntimeError):
    """A model folder, a checkpoint or the loading options that cannot work; the message says what to fix."""


class RecipeError(LlamaVidError, ValueError):
    """A training recipe that cannot run: the message names the field at fault."""


__all__ = ["LlamaVidError", "ModelLoadError", "RecipeError", "UsageError"]
