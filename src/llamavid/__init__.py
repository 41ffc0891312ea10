"""llamavid: chat with a large language model about images, videos and hour-long movies, two tokens a frame.

A re-implementation of LLaMA-VID (Li, Wang and Jia, 2023) on transformers: `LlamaVidForConditionalGeneration`
and `LlamaVidProcessor` load converted released checkpoints (`llamavid convert`) and our own folders.
Attributes load lazily so that the command line starts fast; importing `llamavid.model.modeling` registers the model
with transformers' Auto classes.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "LlamaVidConfig": "llamavid.model.configuration",
    "LlamaVidForConditionalGeneration": "llamavid.model.modeling",
    "LlamaVidProcessor": "llamavid.model.processing",
    "ChatEngine": "llamavid.inference.engine",
    "load_model": "llamavid.inference.loading",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llamavid' has no attribute {name!r}")


__all__ = [*_EXPORTS, "__version__"]
