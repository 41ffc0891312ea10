"""Model names: the released LLaMA-VID checkpoints on the Hugging Face hub, fetched and converted once."""

from .models import Conversion, is_hub_name, llamavid_home, resolve_model
from .releases import RELEASES, Release, markdown_table
from .remote_files import ChecksumError

__all__ = [
    "RELEASES",
    "ChecksumError",
    "Conversion",
    "Release",
    "is_hub_name",
    "llamavid_home",
    "markdown_table",
    "resolve_model",
]
