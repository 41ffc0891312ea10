"""Judge instructions for the video benchmarks.

The wording here is ours. For numbers comparable with published ones, pass `--judge-prompts FILE`: a JSON object
with, for any of the keys `qa`, `correctness`, `detail`, `context`, `temporal`, `consistency`, a `system` and a
`user` text copied from the original scripts (`llamavid/eval/eval_*_qa.py` and
`llamavid/eval/evaluate_benchmark_*.py` in dvlab-research/LLaMA-VID). In the `user` text, the fields go where
`{question}`, `{answer}`, `{pred}` (or `{question1}`, `{question2}`, `{pred1}`, `{pred2}`) stand; they are
replaced literally, so the original's example dicts need no escaping.
"""

from __future__ import annotations

import json
from pathlib import Path

from .data import EvalDataError

_REPLY_QA = (
    "Reply with only a Python dictionary string with keys 'pred' and 'score': 'pred' is 'yes' or 'no', 'score' is "
    "an integer from 0 to 5 where 5 is the best match. For example: {'pred': 'no', 'score': 1}."
)
_REPLY_SCORE = (
    "Reply with only a Python dictionary string with the key 'score', an integer from 0 to 5 where 5 is best. "
    "For example: {'score': 3}."
)
_FIELDS = "Question: {question}\n\nCorrect Answer: {answer}\n\nPredicted Answer: {pred}\n\n"
_FIELDS_PAIR = (
    "Question 1: {question1}\n\nQuestion 2: {question2}\n\nCorrect Answer: {answer}\n\n"
    "Predicted Answer to Question 1: {pred1}\n\nPredicted Answer to Question 2: {pred2}\n\n"
)


def _judge(task: str) -> str:
    return f"You grade answers of a video question-answering system. {task}"


DEFAULT_PROMPTS = {
    "qa": {
        "system": _judge(
            "Decide whether the predicted answer means the same as the correct answer; synonyms and paraphrases "
            "count as matches."
        ),
        "user": "Judge this question-answer pair about a video.\n\n" + _FIELDS + _REPLY_QA,
    },
    "correctness": {
        "system": _judge(
            "Rate the factual accuracy of the predicted answer against the correct answer: wrong facts, objects or "
            "events lower the score."
        ),
        "user": "Rate the correctness of this answer about a video.\n\n" + _FIELDS + _REPLY_SCORE,
    },
    "detail": {
        "system": _judge(
            "Rate how completely and specifically the predicted answer covers the details in the correct answer."
        ),
        "user": "Rate the detail orientation of this answer about a video.\n\n" + _FIELDS + _REPLY_SCORE,
    },
    "context": {
        "system": _judge(
            "Rate how well the predicted answer fits the overall context of the video as told by the correct answer."
        ),
        "user": "Rate the contextual understanding shown by this answer about a video.\n\n" + _FIELDS + _REPLY_SCORE,
    },
    "temporal": {
        "system": _judge(
            "Rate whether the predicted answer gets the order and timing of events right, compared with the correct "
            "answer."
        ),
        "user": "Rate the temporal understanding shown by this answer about a video.\n\n" + _FIELDS + _REPLY_SCORE,
    },
    "consistency": {
        "system": _judge(
            "Two similar questions were asked about one video. Rate whether both predicted answers agree with each "
            "other and with the one correct answer."
        ),
        "user": "Rate the consistency of these two answers about a video.\n\n" + _FIELDS_PAIR + _REPLY_SCORE,
    },
}


def load_prompts(path: str | Path | None) -> dict:
    prompts = {key: dict(value) for key, value in DEFAULT_PROMPTS.items()}
    if path is None:
        return prompts
    path = Path(path)
    try:
        custom = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EvalDataError(f"missing judge prompts file {path}") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise EvalDataError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(custom, dict) or any(key not in prompts for key in custom):
        raise EvalDataError(f"{path}: expected an object with keys among {', '.join(prompts)}")
    for key, value in custom.items():
        if not isinstance(value, dict) or not {"system", "user"} <= set(value):
            raise EvalDataError(f"{path}: '{key}' needs 'system' and 'user' texts")
        prompts[key] = {"system": value["system"], "user": value["user"]}
    return prompts


def messages(prompt: dict, **fields) -> list[dict]:
    user = prompt["user"]
    for name, value in fields.items():
        user = user.replace("{" + name + "}", str(value))
    return [{"role": "system", "content": prompt["system"]}, {"role": "user", "content": user}]
