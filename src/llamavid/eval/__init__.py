"""Evaluation on the twelve benchmarks of LLaMA-VID: the original prompts, batched and resumable generation,
the official scoring rules, and an LLM judge through any OpenAI-compatible endpoint.

One module per benchmark (`gqa`, `pope`, `mme`, `seed`, `scienceqa`, `vizwiz`, `vqav2`, `mmbench`, `video`) loads
the official files, builds the original's prompts and scores answers; `runner` generates answers; `judge` talks to
the judge; the command is `llamavid.cli.eval` (`llamavid eval run|score|merge`). See docs/evaluation.md.
"""

from __future__ import annotations

from importlib import import_module

from .base import Benchmark, ScoreSettings

# name -> (module, attribute) of its Benchmark, in the order of the paper's tables. The one list of benchmarks:
# the command line reads the names without importing the modules.
_TABLE = {
    "vqav2": ("vqav2", "BENCHMARK"),
    "gqa": ("gqa", "BENCHMARK"),
    "vizwiz": ("vizwiz", "BENCHMARK"),
    "scienceqa": ("scienceqa", "BENCHMARK"),
    "pope": ("pope", "BENCHMARK"),
    "mme": ("mme", "BENCHMARK"),
    "mmbench": ("mmbench", "BENCHMARK"),
    "seed": ("seed", "BENCHMARK"),
    "msvd-qa": ("video", "MSVD"),
    "msrvtt-qa": ("video", "MSRVTT"),
    "activitynet-qa": ("video", "ACTIVITYNET"),
    "vcgbench": ("video", "VCGBENCH"),
}

BENCHMARK_NAMES = tuple(_TABLE)


def get_benchmark(name: str) -> Benchmark:
    from .data import EvalDataError

    if name not in _TABLE:
        raise EvalDataError(f"unknown benchmark {name!r}; choose from {', '.join(_TABLE)}")
    module, attribute = _TABLE[name]
    return getattr(import_module(f".{module}", __name__), attribute)


def benchmarks() -> dict[str, Benchmark]:
    """name -> Benchmark, in the order of the paper's tables."""
    return {name: get_benchmark(name) for name in _TABLE}


__all__ = ["BENCHMARK_NAMES", "Benchmark", "ScoreSettings", "benchmarks", "get_benchmark"]
