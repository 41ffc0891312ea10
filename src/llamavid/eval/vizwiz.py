"""VizWiz (`vizwiz/llava_test.jsonl`, images in `vizwiz/test/`).

Test answers are scored by the EvalAI server: `score` writes LLaVA's upload file, a JSON list of
`{"image", "answer"}` with EvalAI-normalised answers (the official converter asserts every question has an answer;
we write "" and report `missing`). With `--split val` the questions come from the official `val.json` (question +
LLaVA's two suffixes, images in `val/`) and `score` computes the VQA soft accuracy locally, overall and per
`answer_type`, against the ten human answers of each entry.

Val answer lines are LLaVA's (`question_id` = the entry's index in val.json, `text`), so an answers file made by the
original scripts scores as well as ours. The prediction goes through the converter's EvalAI normalisation and,
like the human answers, through the evaluator's own (`vqa_text.soft_accuracy`). Unanswered questions score 0 and
are counted in `missing`; an id outside val.json, or one answered twice, is an error rather than a guess: the
answers were made for another file, or shards overlap.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, ScoreSettings, data_path
from .data import EvalDataError, find_media, id_key, read_json, require_keys, write_json
from .image_qa import SHORT_ANSWER, image_item, load_llava_questions, predictions_by_id, questions_by_id
from .vqa_text import accuracy_report, normalize_answer

LAYOUT = "vizwiz/llava_test.jsonl with images in vizwiz/test/; for --split val: vizwiz/val.json (or Annotations/val.json), images in vizwiz/val/"
QUESTIONS = "llava_test.jsonl"
VAL = "val.json"
VAL_PLACES = (VAL, "Annotations/val.json")  # beside the questions, or where the official download unpacks it


def val_file(data: Path) -> Path:
    """The official val.json: `DIR/val.json`, else `DIR/Annotations/val.json`; the first when neither exists (its
    absence is reported when it is read)."""
    return next((Path(data) / p for p in VAL_PLACES if (Path(data) / p).is_file()), Path(data) / VAL)
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
        for index, entry in enumerate(read_val(val_file(data)))
    ]


def read_val(path: Path) -> list[dict]:
    entries = read_json(path, LAYOUT)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise EvalDataError(f"{path} is not a JSON list of question records; expected layout: {LAYOUT}")
    for entry in entries:
        require_keys(entry, ("image", "question", "answers"), path, LAYOUT)
    return entries


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    settings = settings or ScoreSettings()
    data = data_path(data, "vizwiz")
    split = settings.split
    if split not in (None, "test", "val"):
        raise EvalDataError(f"vizwiz splits are test and val, not {split!r}")
    # our runner's val rows carry the image name; without --split they still score as val when val.json is there
    val = val_file(data)
    if split == "val" or (split is None and any("image" in row for row in predictions) and val.is_file()):
        return val_accuracy(read_val(val), predictions, val)
    answers = {key: normalize_answer(text) for key, text in predictions_by_id(predictions).items()}
    rows, _ = questions_by_id(data, QUESTIONS, LAYOUT)
    upload = [{"image": row["image"], "answer": answers.get(id_key(row["question_id"]), "")} for row in rows]
    target = Path(settings.submission or data / "answers_upload" / "vizwiz_test.json")
    write_json(target, upload)
    missing = sum(id_key(row["question_id"]) not in answers for row in rows)
    return {"submission": str(target), "answered": len(rows) - missing, "missing": missing}


def val_answers(entries: list[dict], predictions: list[dict], path: Path) -> dict[int, str]:
    """val.json index -> converter-normalised answer.

    The original answer lines carry only `question_id` (the index into val.json) and `text`; ours add the image
    name, which must then be the one at that index (else the answers belong to another val.json)."""
    answers: dict[int, str] = {}
    for row in predictions:
        if "question_id" not in row:
            raise EvalDataError("an answers row has no question_id; expected LLaVA answer lines with question_id, text")
        key = id_key(row["question_id"])
        index = int(key) if key.isascii() and key.isdigit() else -1
        if not 0 <= index < len(entries):
            raise EvalDataError(
                f"question_id {row['question_id']!r} is not an index of {path} (0..{len(entries) - 1})"
            )
        if index in answers:
            raise EvalDataError(f"question_id {index} is answered twice in the answers file(s)")
        if "image" in row and row["image"] != entries[index].get("image"):
            raise EvalDataError(
                f"question_id {index} is for {row['image']} but {path} has {entries[index].get('image')} there"
            )
        text = row.get("text", "")
        if not isinstance(text, str):
            raise EvalDataError(f"question_id {index} has a text of {type(text).__name__}, not a string")
        answers[index] = normalize_answer(text)
    return answers


def val_accuracy(entries: list[dict], predictions: list[dict], path: Path) -> dict:
    answers = val_answers(entries, predictions, path)
    return accuracy_report(
        (entry.get("answer_type", "other"), answers.get(index), [a["answer"] for a in entry["answers"]])
        for index, entry in enumerate(entries)
    )


BENCHMARK = Benchmark(name="vizwiz", layout=LAYOUT, load=load, score=score)
