"""`llamavid demo`: one question about a synthetic moving-shapes video, through every stage of the model.

Until the trained demo model is bundled (it needs the training pipeline), the weights are a tiny random model,
so the answer is noise: the demo shows the path (frames -> vision features -> two tokens a frame -> LLM) and
its costs, and says so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import torch


def moving_shapes_video(frames: int = 8, size: int = 64, seed: int = 0) -> np.ndarray:
    """A square that moves right and a colour that changes every second: uint8 (T, size, size, 3)."""
    rng = np.random.default_rng(seed)
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    colours = rng.integers(64, 256, size=(frames, 3), dtype=np.uint8)
    side = size // 4
    for t in range(frames):
        x = (t * (size - side)) // max(frames - 1, 1)
        video[t, size // 2 - side // 2 : size // 2 + side // 2, x : x + side] = colours[t]
    return video


def run_demo(question: str, frames: int = 8, seed: int = 0) -> Iterator[str]:
    from .processing import Video
    from .testing import tiny_model_and_processor

    start = time.perf_counter()
    model, processor = tiny_model_and_processor(seed=seed)
    video = Video(moving_shapes_video(frames, seed=seed))
    yield "model: tiny random LLaMA-VID (no trained demo weights bundled yet; the answer is noise)"
    prompt = processor.render_chat([("user", f"<video>\n{question}")])
    inputs = processor(prompt, media=[video], qformer_text=question)
    visual = int((inputs["input_ids"] == model.config.image_token_id).sum())
    yield f"video: {frames} frames at 1 fps -> {visual} visual tokens ({model.config.tokens_per_frame} a frame)"
    yield f"USER: {question}"
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = processor.decode(output[0, inputs["input_ids"].shape[1] :]).strip()
    yield f"ASSISTANT: {answer}"
    yield f"({time.perf_counter() - start:.1f} s end to end on {next(model.parameters()).device})"
