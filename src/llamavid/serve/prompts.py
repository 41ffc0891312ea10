"""The server's view of the chat layout (`llamavid.inference.inputs`): the same samples, with layout errors turned into
the API's 400 responses."""

from __future__ import annotations

from ..inference.inputs import ContextLengthError, Sample, Turn, collate
from ..inference.inputs import build_sample as _build_sample
from .errors import APIError


def build_sample(engine, turns: list[Turn], system: str | None = None, template: str | None = None) -> Sample:
    """`llamavid.inference.inputs.build_sample`, raising APIError (400) for prompts that do not fit or cannot mix."""
    try:
        return _build_sample(engine, turns, system, template)
    except ContextLengthError as error:
        raise APIError(str(error), param="messages") from None
    except ValueError as error:
        raise APIError(str(error)) from None


__all__ = ["Sample", "build_sample", "collate"]
