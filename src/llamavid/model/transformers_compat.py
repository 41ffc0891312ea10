"""The transformers APIs that differ across the versions llamavid supports (5.16 and newer), in one place.

Each name is found by looking at the installed library, never by comparing version numbers, so a backport or
a pre-release cannot fool it:

* `CACHE_KEY`: the keyword a model's `forward` takes, and the field its output returns, for the KV cache.
  transformers 5.24 renamed `past_key_values` to `cache` (the old name is only a deprecated alias there).
* `SubConfigSpec`: how a composite config declares its sub-configs; from 5.20 (``None`` before, where only a
  `sub_configs` class map exists).
"""

from __future__ import annotations

from dataclasses import fields

from transformers.modeling_outputs import CausalLMOutputWithPast

try:
    from transformers.configuration_utils import SubConfigSpec
except ImportError:  # transformers < 5.20
    SubConfigSpec = None

CACHE_KEY = "cache" if any(f.name == "cache" for f in fields(CausalLMOutputWithPast)) else "past_key_values"

__all__ = ["CACHE_KEY", "SubConfigSpec"]
