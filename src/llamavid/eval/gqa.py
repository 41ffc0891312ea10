"""GQA test-dev balanced (`llava_gqa_testdev_balanced.jsonl`, official `data/testdev_balanced_questions.json`).

Scoring as published: LLaVA's converter lower-cases each answer and strips trailing periods
(`text.rstrip('.').lower()`, so "Yes ." keeps its space and is wrong); GQA's official `eval.py` then compares
strings exactly, over balanced questions only, and splits them into `binary` (structural type other than
"query") and `open` ("query"). Departure: a question without a prediction counts as wrong (the official
script raises KeyError) and is reported in `missing`.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, ScoreSettings, data_path, percent
from .data import id_key, read_json
from .image_qa import load_llava_questions, predictions_by_id

LAYOUT = (
    "GQA/llava_gqa_testdev_balanced.jsonl, GQA/data/testdev_balanced_questions.json, images in GQA/data/images/"
)
QUESTIONS = "llava_gqa_testdev_balanced.jsonl"
GROUND_TRUTH = "data/testdev_balanced_questions.json"


def load(data: Path, split: str | None = None):
    return load_llava_questions(data, QUESTIONS, ("data/images", "images", "."), LAYOUT)


def clean(text: str) -> str:
    """LLaVA's `convert_gqa_for_eval.py`."""
    return text.rstrip(".").lower()


def submission(predictions: list[dict]) -> list[dict]:
    return [{"questionId": row["question_id"], "prediction": clean(row["text"])} for row in predictions]


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    truth = read_json(data_path(data, "gqa") / GROUND_TRUTH, LAYOUT)
    answers = {key: clean(text) for key, text in predictions_by_id(predictions).items()}
    totals = {"accuracy": [0, 0], "binary": [0, 0], "open": [0, 0]}
    missing = 0
    for qid, question in truth.items():
        if not question.get("isBalanced", True):
            continue
        predicted = answers.get(id_key(qid))
        missing += predicted is None
        correct = predicted is not None and predicted == question["answer"]
        kind = "open" if question["types"]["structural"] == "query" else "binary"
        for key in ("accuracy", kind):
            totals[key][0] += correct
            totals[key][1] += 1
    result = {key: percent(*pair) for key, pair in totals.items()}
    result["missing"] = missing
    return result


BENCHMARK = Benchmark(name="gqa", layout=LAYOUT, load=load, score=score)
