"""Visual tokens for 256 frames x 4 prompts with a tiny model: our batched path versus a per-frame loop.

The loop is the straightforward implementation (the original's shape): one Q-Former and token-generation pass per
frame and prompt. Both produce the same tokens (asserted). Prints one JSON line: batched_s, loop_s, ratio.
"""

from __future__ import annotations

import json
import time

import torch

from llamavid.testing import tiny_model_and_processor

FRAMES, PROMPTS, REPEATS = 256, 4, 3
QUESTIONS = [
    "What is happening in this video?",
    "What colour is the square?",
    "Describe the video in detail.",
    "Is there a cat? Answer the question using a single word or phrase.",
]


def per_frame_loop(model, features, ids, mask) -> torch.Tensor:
    generator = model.token_generator
    rows = []
    for prompt in range(ids.shape[0]):
        for frame in range(features.shape[0]):
            rows.append(
                generator(
                    features[frame : frame + 1],
                    ids[prompt : prompt + 1],
                    mask[prompt : prompt + 1],
                    torch.zeros(1, dtype=torch.long),
                    torch.zeros(1, dtype=torch.long),
                )
            )
    return torch.cat(rows).flatten(0, 1)


def best_time(fn, repeats: int = REPEATS) -> tuple[float, torch.Tensor]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    torch.manual_seed(0)
    model, processor = tiny_model_and_processor()
    size = model.config.image_size
    with torch.no_grad():
        features = model.get_vision_features(torch.randn(FRAMES, 3, size, size))
        ids, mask = processor.tokenize_qformer(QUESTIONS[:PROMPTS])
        counts = torch.tensor([FRAMES])
        segments = torch.zeros(PROMPTS, dtype=torch.long)
        batched_s, batched = best_time(lambda: model.get_visual_tokens(features, ids, mask, counts, segments))
        loop_s, looped = best_time(lambda: per_frame_loop(model, features, ids, mask))
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=1e-4)
    print(
        json.dumps(
            {
                "frames": FRAMES,
                "prompts": PROMPTS,
                "batched_s": round(batched_s, 4),
                "loop_s": round(loop_s, 4),
                "ratio": round(loop_s / batched_s, 2),
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
