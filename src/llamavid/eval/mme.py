"""MME (`llava_mme.jsonl`, ground truth in `MME_Benchmark_release_version/<task>/`).

Official pipeline: LLaVA's `convert_answer_to_mme.py` finds each question's ground truth in the task's txt files
("question<TAB>yes|no" lines; under `questions_answers_YN/` for tasks with an `images/` folder) by the question
without the short-answer suffix, with " Please answer yes or no." appended (double space tried next). MME's
`calculation.py` then maps the lower-cased answer to yes/no: exact, else "yes" in its first 4 characters, else
"no" there, else "other" (always wrong). Per task: acc = % correct questions, acc+ = % images whose two questions
are both correct, score = acc + acc+. Perception sums 10 tasks (max 2000), cognition 4 (max 800).

Differences: images are paired by name (the official tool pairs consecutive lines, the same thing for the
official question order); a missing prediction is an "other" answer and is reported in `missing`. The official
tool reads the answer with its line's trailing newline ("yes\\n" falls to the prefix test): same outcome.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, ScoreSettings, data_path, percent
from .data import EvalDataError, id_key, read_jsonl
from .image_qa import SHORT_ANSWER, load_llava_questions

LAYOUT = "MME/llava_mme.jsonl and MME/MME_Benchmark_release_version/<task>/ (images and yes/no txt files)"
QUESTIONS = "llava_mme.jsonl"
RELEASE = "MME_Benchmark_release_version"
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def load(data: Path, split: str | None = None):
    return load_llava_questions(data, QUESTIONS, (RELEASE, "."), LAYOUT, repeated_ids=True)


def parse(text: str) -> str:
    text = text.lower()
    if text in ("yes", "no"):
        return text
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def ground_truth(release: Path) -> dict[tuple[str, str, str], str]:
    truth = {}
    for task_dir in sorted(p for p in release.iterdir() if p.is_dir()):
        qa_dir = task_dir / "questions_answers_YN" if (task_dir / "images").is_dir() else task_dir
        for txt in sorted(qa_dir.glob("*.txt")):
            for line in txt.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    question, answer = line.strip().split("\t")
                    truth[(task_dir.name, txt.name, question)] = answer
    return truth


def lookup(truth: dict, task: str, question_id: str, text: str) -> str:
    file = question_id.split("/")[-1].split(".")[0] + ".txt"
    question = text.replace(SHORT_ANSWER, "").strip() if SHORT_ANSWER in text else text
    if "Please answer yes or no." not in question:
        question = question + " Please answer yes or no."
        if (task, file, question) not in truth:
            question = question.replace(" Please answer yes or no.", "  Please answer yes or no.")
    try:
        return truth[(task, file, question)]
    except KeyError:
        raise EvalDataError(f"no ground truth for {question_id} ({question!r}) in {RELEASE}/{task}") from None


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    data = data_path(data, "mme")
    if not (data / RELEASE).is_dir():
        raise EvalDataError(f"missing {data / RELEASE}; expected layout: {LAYOUT}")
    truth = ground_truth(data / RELEASE)
    rows = read_jsonl(data / QUESTIONS, LAYOUT)
    # question ids name the image and repeat for its two questions: answers are found by id and question text
    answers = {(id_key(row["question_id"]), row.get("prompt")): row.get("text", "") for row in predictions}
    per_task: dict[str, dict[str, list[bool]]] = {}
    missing = 0
    for row in rows:
        qid = str(row["question_id"])
        task = row.get("category") or qid.split("/")[0]
        gold = lookup(truth, task, qid, row["text"]).lower()
        text = answers.get((id_key(qid), row["text"]))
        missing += text is None
        correct = text is not None and parse(text) == gold
        per_task.setdefault(task, {}).setdefault(qid.split("/")[-1], []).append(correct)
    tasks = {}
    for task, images in per_task.items():
        flags = [flag for image in images.values() for flag in image]
        acc = percent(sum(flags), len(flags))
        acc_plus = percent(sum(all(image) for image in images.values()), len(images))
        tasks[task] = acc + acc_plus
    return {
        "perception": sum(tasks.get(task, 0.0) for task in PERCEPTION),
        "cognition": sum(tasks.get(task, 0.0) for task in COGNITION),
        "missing": missing,
        "per_task": tasks,
    }


BENCHMARK = Benchmark(name="mme", layout=LAYOUT, load=load, score=score)
