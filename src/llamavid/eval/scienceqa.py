"""ScienceQA-IMG (`llava_test_CQM-A.json`, `problems.json`, `pid_splits.json`, images in `images/test/`).

Prompts as `model_vqa_science.py --single-pred-prompt`: the first human message with "<image>" removed and
stripped, "\\nAnswer with the option's letter from the given choices directly." appended; "<image>\\n" in front
when the problem has an image; the Q-Former sees the logged prompt without "<image>" and outer newlines; 1024 new
tokens. Images are *not* padded to a square here (the original preprocesses them directly). Text-only problems
crash the original; we answer them without media.

Official parsing (`eval_science_qa.py`): the text is exactly a letter A-E; or starts with "X. "; or contains
exactly one match of the regex "The answer is ([A-Z])." (the final "." matches any character, so "The answer is
B" at the very end does not match); else FAILED. A letter beyond the problem's choices is wrong. `img_accuracy`
covers problems whose logged prompt contains "<image>" (for a missing prediction: problems with an image).
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Benchmark, GenerationDefaults, Item, Media, Request, ScoreSettings, data_path, percent
from .data import find_media, id_key, read_json, require_keys

LAYOUT = "scienceqa/llava_test_CQM-A.json, scienceqa/problems.json, scienceqa/pid_splits.json, images in scienceqa/images/test/"
QUESTIONS = "llava_test_CQM-A.json"
SUFFIX = "Answer with the option's letter from the given choices directly."
OPTIONS = ("A", "B", "C", "D", "E")
_ANSWER_IS = re.compile(r"The answer is ([A-Z]).")


def load(data: Path, split: str | None = None):
    path = Path(data) / QUESTIONS
    items = []
    for record in read_json(path, LAYOUT):
        require_keys(record, ("id", "conversations"), path, LAYOUT)
        question = record["conversations"][0]["value"].replace("<image>", "").strip()
        media = None
        logged = question
        if "image" in record:
            image = find_media(Path(data), record["image"], ("images/test", "images", "."), LAYOUT)
            media = Media("image", str(image), pad=False)
            question = "<image>\n" + question
            logged = "<image>\n" + logged
        question += "\n" + SUFFIX
        logged += "\n" + SUFFIX
        qformer = logged.replace("<image>", "").strip("\n")
        items.append(Item(record["id"], [Request(question, qformer)], media, {"prompt": logged}))
    return items


def parse(text: str) -> str:
    if text in OPTIONS:
        return text
    if len(text) >= 3 and text[0] in OPTIONS and text[1:3] == ". ":
        return text[0]
    found = _ANSWER_IS.findall(text)
    return found[0] if len(found) == 1 else "FAILED"


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    settings = settings or ScoreSettings()
    data = data_path(data, "scienceqa")
    split = settings.split or "test"
    problem_ids = read_json(data / "pid_splits.json", LAYOUT)[split]
    problems = read_json(data / "problems.json", LAYOUT)
    rows = {id_key(row["question_id"]): row for row in predictions if "question_id" in row}
    correct = total = img_correct = img_total = missing = 0
    for pid in problem_ids:
        problem = problems[pid]
        row = rows.get(id_key(pid))
        missing += row is None
        letter = "FAILED" if row is None else parse(row.get("text", ""))
        choices = OPTIONS[: len(problem["choices"])]
        ok = letter in choices and choices.index(letter) == problem["answer"]
        is_image = ("<image>" in row.get("prompt", "")) if row is not None else bool(problem.get("image"))
        correct += ok
        total += 1
        img_correct += ok and is_image
        img_total += is_image
    return {
        "accuracy": percent(correct, total),
        "img_accuracy": percent(img_correct, img_total),
        "missing": missing,
    }


BENCHMARK = Benchmark(
    name="scienceqa",
    layout=LAYOUT,
    load=load,
    score=score,
    generation=GenerationDefaults(max_new_tokens=1024),
)
