"""VizWiz (`vizwiz/llava_test.jsonl`, images in `vizwiz/test/`).

Test answers are scored by the EvalAI server: `score` writes LLaVA's upload file, a JSON list of
`{"image", "answer"}` with EvalAI-normalised answers (the official converter asserts every question has an answer;
we write "" and report `missing`). With `--split val` the questions come from the official `val.json` (question +
LLaVA's two suffixes, images in `val/`) and `score` computes the VQA soft accuracy locally per answer type.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, data_path, percent
from .data import EvalDataError, find_media, id_key, read_json, write_json
from .image_qa import SHORT_ANSWER, image_item, load_llava_questions, predictions_by_id, questions_by_id
from .vqa_text import normalize_answer, soft_accuracy

LAYOUT = "vizwiz/llava_test.jsonl with images in vizwiz/test/; for --split val: vizwiz/val.json, images in vizwiz/val/"
QUESTIONS = "llava_test.jsonl"
VAL = "val.json"
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."


def load(data: Path, split: str | None = None):
    if split in (None, "test"):
        return load_llava_questions(data, QUESTIONS, ("test", "images", "."), LAYOUT)
    if split != "val":
        raise EvalDataError(f"vizwiz splits are test and val, not {split!r}")
    return [
        image_item(
            index,
            find_media(Path(data), entry["image"], ("val", "images", "."), LAYOUT),
            f"{entry['question']}\n{UNANSWERABLE}\n{SHORT_ANSWER}",
            record={"image": entry["image"]},
        )
        for index, entry in enumerate(read_json(Path(data) / VAL, LAYOUT))
    ]


def score(data: Path | None, predictions: list[dict], options=None) -> dict:
    data = data_path(data, "vizwiz")
    answers = {key: normalize_answer(text) for key, text in predictions_by_id(predictions).items()}
    if any("image" in row for row in predictions) and (data / VAL).is_file():
        return local_accuracy(read_json(data / VAL, LAYOUT), answers)
    rows, _ = questions_by_id(data, QUESTIONS, LAYOUT)
    upload = [{"image": row["image"], "answer": answers.get(id_key(row["question_id"]), "")} for row in rows]
    target = Path(getattr(options, "submission", None) or data / "answers_upload" / "vizwiz_test.json")
    write_json(target, upload)
    missing = sum(id_key(row["question_id"]) not in answers for row in rows)
    return {"submission": str(target), "answered": len(rows) - missing, "missing": missing}


def local_accuracy(entries: list[dict], answers: dict[str, str]) -> dict:
    total, by_type, missing = 0.0, {}, 0
    for index, entry in enumerate(entries):
        prediction = answers.get(id_key(index))
        missing += prediction is None
        human = [a["answer"] for a in entry["answers"]]
        value = 0.0 if prediction is None else soft_accuracy(prediction, human)
        total += value
        kind = entry.get("answer_type", "other")
        by_type.setdefault(kind, [0.0, 0])
        by_type[kind][0] += value
        by_type[kind][1] += 1
    return {
        "accuracy": percent(total, len(entries)),
        "per_answer_type": {kind: percent(*pair) for kind, pair in sorted(by_type.items())},
        "missing": missing,
        "local_approximation": True,
    }


BENCHMARK = Benchmark(name="vizwiz", layout=LAYOUT, load=load, score=score)
