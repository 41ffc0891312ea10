"""llamavid: chat with a large language model about images, videos and hour-long movies, two tokens a frame.

A re-implementation of LLaMA-VID (Li, Wang and Jia, 2023) on transformers: `LlamaVidForConditionalGeneration`
and `LlamaVidProcessor` load converted released checkpoints (`llamavid convert`) and our own folders.
"""

from transformers import AutoConfig, AutoModelForImageTextToText

from .configuration import LlamaVidConfig
from .modeling import LlamaVidForConditionalGeneration
from .processing import LlamaVidProcessor

AutoConfig.register(LlamaVidConfig.model_type, LlamaVidConfig, exist_ok=True)
AutoModelForImageTextToText.register(LlamaVidConfig, LlamaVidForConditionalGeneration, exist_ok=True)

__version__ = "0.1.0"
__all__ = ["LlamaVidConfig", "LlamaVidForConditionalGeneration", "LlamaVidProcessor", "__version__"]
