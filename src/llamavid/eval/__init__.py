"""Evaluation on the twelve benchmarks of LLaMA-VID: the original prompts, batched and resumable generation,
the official scoring rules, and an LLM judge through any OpenAI-compatible endpoint.

One module per benchmark (`gqa`, `pope`, `mme`, `seed`, `scienceqa`, `vizwiz`, `vqav2`, `mmbench`, `video`) loads
the official files, builds the original's prompts and scores answers; `runner` generates answers; `judge` talks to
the judge; the command is `llamavid.cli.eval` (`llamavid eval run|score|merge`). See docs/evaluation.md.
"""

from __future__ import annotations

from .base import Benchmark


def benchmarks() -> dict[str, Benchmark]:
    """name -> Benchmark, in the order of the paper's tables."""
    from . import gqa, mmbench, mme, pope, scienceqa, seed, video, vizwiz, vqav2

    found = [
        vqav2.BENCHMARK, gqa.BENCHMARK, vizwiz.BENCHMARK, scienceqa.BENCHMARK, pope.BENCHMARK, mme.BENCHMARK,
        mmbench.BENCHMARK, seed.BENCHMARK, video.MSVD, video.MSRVTT, video.ACTIVITYNET, video.VCGBENCH,
    ]
    return {bench.name: bench for bench in found}


BENCHMARK_NAMES = (
    "vqav2", "gqa", "vizwiz", "scienceqa", "pope", "mme", "mmbench", "seed",
    "msvd-qa", "msrvtt-qa", "activitynet-qa", "vcgbench",
)


def get_benchmark(name: str) -> Benchmark:
    from .data import EvalDataError

    table = benchmarks()
    if name not in table:
        raise EvalDataError(f"unknown benchmark {name!r}; choose from {', '.join(table)}")
    return table[name]


__all__ = ["BENCHMARK_NAMES", "Benchmark", "benchmarks", "get_benchmark"]
