"""The KV cache's precision: `auto` (the model's dtype) or 8/4-bit integers through transformers' quantized cache.

The names follow vLLM's `--kv-cache-dtype`. The quantized cache keeps the newest `RESIDUAL_LENGTH` positions in
the model's dtype and the rest as HQQ integers in groups of `GROUP_SIZE` (a scale and a zero point per group): on
random and fixture models HQQ kept greedy answers where quanto did not, and it needs no compiled kernels, so it
runs the same on CPU and CUDA. A 64K-token prompt of the 7B needs 32 GB of cache in bf16, about 17 in int8 and 9 in
int4.
"""

from __future__ import annotations

import importlib.util
import math

from ..errors import UsageError

KV_CACHE_DTYPES = {"auto": None, "int8": 8, "int4": 4}
GROUP_SIZE = 64
RESIDUAL_LENGTH = 128


def kv_cache_bits(name: str) -> int | None:
    """Bits of a cache element for a `--kv-cache-dtype` name (None: the model's dtype); unknown names refused."""
    if name not in KV_CACHE_DTYPES:
        raise UsageError(f"Unknown KV-cache dtype {name!r}; use one of {', '.join(KV_CACHE_DTYPES)}")
    return KV_CACHE_DTYPES[name]


def bytes_per_element(name: str, model_bytes: int) -> float:
    """Bytes one cached key or value element takes: the integer plus its group's scale and zero point."""
    bits = kv_cache_bits(name)
    if bits is None:
        return float(model_bytes)
    return bits / 8 + 2 * model_bytes / GROUP_SIZE


def new_cache(name: str, text_config):
    """A fresh quantized cache for `generate`, or None for `auto` (transformers makes its usual one)."""
    bits = kv_cache_bits(name)
    if bits is None:
        return None
    if importlib.util.find_spec("hqq") is None:
        raise UsageError(
            f"--kv-cache-dtype {name} needs the hqq package: pip install 'llamavid[kvquant]' (hqq)"
        )
    from transformers import QuantizedCache

    # HQQ groups the flattened (batch, heads, positions, head_dim) states: a group size dividing one position's
    # heads x head_dim divides every shape the prompt can give
    heads = getattr(text_config, "num_key_value_heads", None) or text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    group = math.gcd(GROUP_SIZE, heads * head_dim)
    return QuantizedCache(
        backend="hqq", config=text_config, nbits=bits, q_group_size=group, residual_length=RESIDUAL_LENGTH
    )


__all__ = ["KV_CACHE_DTYPES", "bytes_per_element", "kv_cache_bits", "new_cache"]
