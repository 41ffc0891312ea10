"""POPE (`llava_pope_test.jsonl` with a `category` per question, labels in `coco/coco_pope_<category>.json`).

Official rule (`eval_pope.py`): keep the text before the first "."; delete commas; split on single spaces; the
answer is "no" if a token is exactly "No", "no" or "not", else "yes" (so "Not" or "NO" mean yes). Labels "no" -> 0,
anything else -> 1 (positive = yes). Labels (JSON lines) pair with the category's answers by position; we take the
answers in question-file order by id, which is the same pairing for a complete run. Departure: a missing
prediction counts as the wrong answer (a false negative or a false positive) and is reported in `missing`; an
empty denominator gives 0 instead of ZeroDivisionError. `accuracy` and `f1` are means over the categories.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, ScoreSettings, data_path, percent
from .data import EvalDataError, id_key, read_jsonl
from .image_qa import load_llava_questions, predictions_by_id, questions_by_id

LAYOUT = "pope/llava_pope_test.jsonl, pope/coco/coco_pope_{adversarial,popular,random}.json, images in pope/val2014/"
QUESTIONS = "llava_pope_test.jsonl"


def load(data: Path, split: str | None = None):
    return load_llava_questions(data, QUESTIONS, ("val2014", "images", "."), LAYOUT)


def parse(text: str) -> str:
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def category_metrics(predicted: list[int], labels: list[int]) -> dict:
    tp = sum(p == 1 and y == 1 for p, y in zip(predicted, labels, strict=True))
    fp = sum(p == 1 and y == 0 for p, y in zip(predicted, labels, strict=True))
    tn = sum(p == 0 and y == 0 for p, y in zip(predicted, labels, strict=True))
    fn = sum(p == 0 and y == 1 for p, y in zip(predicted, labels, strict=True))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": percent(tp + tn, len(labels)),
        "precision": 100 * precision,
        "recall": 100 * recall,
        "f1": 100 * f1,
        "yes_ratio": percent(predicted.count(1), len(predicted)),
    }


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    data = data_path(data, "pope")
    rows, _ = questions_by_id(data, QUESTIONS, LAYOUT)
    answers = predictions_by_id(predictions)
    label_files = sorted((data / "coco").glob("coco_pope_*.json"))
    if not label_files:
        raise EvalDataError(f"no label files coco_pope_*.json in {data / 'coco'}; expected layout: {LAYOUT}")
    categories, missing = {}, 0
    for label_file in label_files:
        category = label_file.name[len("coco_pope_") : -len(".json")]
        labels = [0 if row["label"] == "no" else 1 for row in read_jsonl(label_file, LAYOUT)]
        questions = [row for row in rows if row.get("category") == category]
        if len(questions) != len(labels):
            raise EvalDataError(
                f"{label_file} has {len(labels)} labels but {QUESTIONS} has {len(questions)} {category} questions"
            )
        predicted = []
        for question, label in zip(questions, labels, strict=True):
            text = answers.get(id_key(question["question_id"]))
            if text is None:
                missing += 1
                predicted.append(1 - label)
            else:
                predicted.append(0 if parse(text) == "no" else 1)
        categories[category] = category_metrics(predicted, labels)
    count = len(categories)
    result = {
        "accuracy": sum(c["accuracy"] for c in categories.values()) / count,
        "f1": sum(c["f1"] for c in categories.values()) / count,
        "missing": missing,
        "per_category": {name: c["accuracy"] for name, c in categories.items()},
    }
    for metric in ("precision", "recall", "f1", "yes_ratio"):
        result[f"{metric}_per_category"] = {name: c[metric] for name, c in categories.items()}
    return result


BENCHMARK = Benchmark(name="pope", layout=LAYOUT, load=load, score=score)
