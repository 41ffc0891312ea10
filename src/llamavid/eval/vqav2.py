"""VQAv2 (`llava_vqav2_mscoco_test-dev2015.jsonl`; all ids in `llava_vqav2_mscoco_test2015.jsonl`).

test-dev is scored only by the EvalAI server: `score` writes LLaVA's upload file, a JSON list of
`{"question_id", "answer"}` covering every id of the full test2015 file, each answer normalised by the EvalAI
processor (`vqa_text.normalize_answer`), "" for ids without a prediction. With `--split val` questions come from
the official `v2_OpenEnded_mscoco_val2014_questions.json` (LLaVA's short-answer suffix appended, images in
`val2014/`) and `score` computes the VQA soft accuracy against `v2_mscoco_val2014_annotations.json` locally:
the server's formula over the normalised prediction and human answers, a local approximation of its numbers.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, ScoreSettings, data_path
from .data import EvalDataError, id_key, read_json, read_jsonl, write_json
from .image_qa import SHORT_ANSWER, image_item, load_llava_questions, predictions_by_id
from .vqa_text import accuracy_report, normalize_answer

LAYOUT = (
    "vqav2/llava_vqav2_mscoco_test-dev2015.jsonl (+ llava_vqav2_mscoco_test2015.jsonl), images in vqav2/test2015/; "
    "for --split val: v2_OpenEnded_mscoco_val2014_questions.json, v2_mscoco_val2014_annotations.json, val2014/"
)
TEST_DEV = "llava_vqav2_mscoco_test-dev2015.jsonl"
TEST_ALL = "llava_vqav2_mscoco_test2015.jsonl"
VAL_QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.json"
VAL_ANNOTATIONS = "v2_mscoco_val2014_annotations.json"


def load(data: Path, split: str | None = None):
    if split in (None, "test-dev"):
        return load_llava_questions(data, TEST_DEV, ("test2015", "images", "."), LAYOUT)
    if split != "val":
        raise EvalDataError(f"vqav2 splits are test-dev and val, not {split!r}")
    questions = read_json(Path(data) / VAL_QUESTIONS, LAYOUT)["questions"]
    from .data import find_media

    return [
        image_item(
            q["question_id"],
            find_media(Path(data), f"COCO_val2014_{q['image_id']:012d}.jpg", ("val2014", "images", "."), LAYOUT),
            f"{q['question']}\n{SHORT_ANSWER}",
        )
        for q in questions
    ]


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    settings = settings or ScoreSettings()
    data = data_path(data, "vqav2")
    answers = {key: normalize_answer(text) for key, text in predictions_by_id(predictions).items()}
    annotations_file = data / VAL_ANNOTATIONS
    if annotations_file.is_file():
        annotations = read_json(annotations_file, LAYOUT)["annotations"]
        if any(id_key(a["question_id"]) in answers for a in annotations):
            return local_accuracy(annotations, answers)
    ids = [row["question_id"] for row in read_jsonl(data / TEST_ALL, LAYOUT)]
    upload = [{"question_id": qid, "answer": answers.get(id_key(qid), "")} for qid in ids]
    target = Path(settings.submission or data / "answers_upload" / "vqav2_test-dev.json")
    write_json(target, upload)
    missing = sum(id_key(qid) not in answers for qid in ids)
    return {"submission": str(target), "answered": len(ids) - missing, "missing": missing}


def local_accuracy(annotations: list[dict], answers: dict[str, str]) -> dict:
    return accuracy_report(
        (a.get("answer_type", "other"), answers.get(id_key(a["question_id"])), [h["answer"] for h in a["answers"]])
        for a in annotations
    )


BENCHMARK = Benchmark(name="vqav2", layout=LAYOUT, load=load, score=score)
