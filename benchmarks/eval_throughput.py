"""Evaluation throughput: answers per second at batch size 1 and 16 on 64 generated image questions.

Prints one JSON line with `bs1_per_s`, `bs16_per_s` and `ratio`. A tiny random LLaMA-VID answers 64 short-answer
questions (random 32x32 images, the GQA-style prompt, greedy decoding, `--max-new-tokens` tokens) through the same
`AnswerGenerator` that `llamavid eval run` uses; the two batch sizes must give identical answers.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from llamavid.eval.image_qa import SHORT_ANSWER, image_item
from llamavid.eval.runner import AnswerGenerator
from llamavid.testing import tiny_model_and_processor


def questions(folder: Path, count: int) -> list:
    rng = np.random.default_rng(0)
    items = []
    for index in range(count):
        path = folder / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
        items.append(image_item(index, path, f"What is in picture number {index}?\n{SHORT_ANSWER}"))
    return items


def answer_all(generator: AnswerGenerator, items: list, batch_size: int, max_new_tokens: int) -> tuple[list, float]:
    start = time.perf_counter()
    texts = []
    for offset in range(0, len(items), batch_size):
        texts += generator.answer(items[offset : offset + batch_size], max_new_tokens, temperature=0.0)
    return texts, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    # one thread by default: on a shared 2-core machine, two torch threads contending with another process
    # made every step ~30x slower and the figures meaningless
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = tiny_model_and_processor(seed=0)
    generator = AnswerGenerator(model, processor)
    with tempfile.TemporaryDirectory() as folder:
        items = questions(Path(folder), args.questions)
        answer_all(generator, items[:4], 4, args.max_new_tokens)  # warm-up
        one, one_s = answer_all(generator, items, 1, args.max_new_tokens)
        sixteen, sixteen_s = answer_all(generator, items, 16, args.max_new_tokens)
    if one != sixteen:
        raise SystemExit("batch size 16 changed the answers")
    result = {
        "questions": args.questions,
        "max_new_tokens": args.max_new_tokens,
        "bs1_per_s": round(args.questions / one_s, 2),
        "bs16_per_s": round(args.questions / sixteen_s, 2),
        "ratio": round(one_s / sixteen_s, 2),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
