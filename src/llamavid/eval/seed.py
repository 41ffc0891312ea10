"""SEED-Bench (`llava-seed-bench.jsonl`; `SEED-Bench.json` with answers and question types).

Official rule (`convert_seed_for_submission.py`): correct only when the answer text *equals* the answer letter
("A" is right, "A." or " A" is not); accuracy per `question_type_id`, over all questions, image-only and
video-only questions (video questions show a middle frame, as in the LLaVA pack). Departures: ids match whether
written as numbers or strings (the official script scores string ids 0%); a missing prediction is wrong and
reported in `missing`. Writes the upload file (`{"question_id", "prediction"}` lines) when asked.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, ScoreSettings, data_path, percent
from .data import id_key, read_json, write_jsonl
from .image_qa import load_llava_questions, predictions_by_id

LAYOUT = "seed_bench/llava-seed-bench.jsonl, seed_bench/SEED-Bench.json, images beside them as in the LLaVA pack"
QUESTIONS = "llava-seed-bench.jsonl"
ANNOTATION = "SEED-Bench.json"


def load(data: Path, split: str | None = None):
    return load_llava_questions(data, QUESTIONS, (".", "images"), LAYOUT)


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    settings = settings or ScoreSettings()
    annotation = read_json(data_path(data, "seed") / ANNOTATION, LAYOUT)
    answers = predictions_by_id(predictions)
    names = {type_id: name for name, type_id in annotation.get("question_type", {}).items()}
    counts: dict[str, list[int]] = {"all": [0, 0], "image": [0, 0], "video": [0, 0]}
    per_type: dict = {}
    missing = 0
    for question in annotation["questions"]:
        text = answers.get(id_key(question["question_id"]))
        missing += text is None
        correct = text is not None and text == question["answer"]
        name = names.get(question["question_type_id"], str(question["question_type_id"]))
        for key in ("all", question.get("data_type"), name):
            bucket = counts if key in counts else per_type
            bucket.setdefault(key, [0, 0])
            bucket[key][0] += correct
            bucket[key][1] += 1
    result = {
        "accuracy": percent(*counts["all"]),
        "image_accuracy": percent(*counts["image"]),
        "video_accuracy": percent(*counts["video"]),
        "missing": missing,
        "per_type": {name: percent(*pair) for name, pair in sorted(per_type.items())},
    }
    if settings.submission:
        rows = [
            {"question_id": q["question_id"], "prediction": answers.get(id_key(q["question_id"]), "")}
            for q in annotation["questions"]
        ]
        result["submission"] = str(write_jsonl(Path(settings.submission), rows))
    return result


BENCHMARK = Benchmark(name="seed", layout=LAYOUT, load=load, score=score)
