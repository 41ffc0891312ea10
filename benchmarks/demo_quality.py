"""The bundled demo model (`llamavid demo`) on freshly generated held-out synthetic questions. Prints one JSON
line: accuracy overall and per type, the share of one-word answers, load time and mean seconds per answer
(batched greedy decoding, `--threads` torch threads).

    python benchmarks/demo_quality.py [--seed 1] [--questions 300] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch


def demo_quality(seed: int, questions: int, batch_size: int = 16) -> dict:
    from llamavid.toy.demo import load_demo_engine
    from llamavid.toy.synthetic import fresh_heldout
    from llamavid.train.evaluate import evaluate_records

    with tempfile.TemporaryDirectory() as tmp:
        records = fresh_heldout(Path(tmp), seed=seed, questions=questions)
        start = time.perf_counter()
        engine = load_demo_engine()
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        figures = evaluate_records(
            engine.model, engine.processor, records, Path(tmp) / "videos", batch_size=batch_size, max_new_tokens=8
        )
        answer_s = (time.perf_counter() - start) / max(figures["count"], 1)
    return {
        "accuracy": figures["accuracy"],
        "colour_accuracy": figures.get("colour_accuracy"),
        "shape_accuracy": figures.get("shape_accuracy"),
        "direction_accuracy": figures.get("direction_accuracy"),
        "temporal_accuracy": figures.get("order_accuracy"),
        "one_word_rate": figures["one_word_rate"],
        "load_s": load_s,
        "answer_s": answer_s,
        "questions": figures["count"],
        "seed": seed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1, help="held-out videos' seed (the demo trained on seed 0)")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(json.dumps(demo_quality(args.seed, args.questions)))


if __name__ == "__main__":
    main()
