"""What every benchmark module provides: questions to ask (`load`), how an answer becomes a row (`make_row`) and
the official scoring (`score`).

A question is an `Item`: one media item (image, video or none) and one or more `Request`s about it (the
Video-ChatGPT consistency set asks two questions of one video). Each request is a user message in the model's
chat template plus the Q-Former prompt the original used for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Media:
    """`kind` "image" or "video"; `source` a path, or with `base64` the image's base64 text (MMBench's table).

    `pad`: pad an image to a square as the model config says (LLaVA's loader does; ScienceQA does not)."""

    kind: str
    source: object
    pad: bool = True
    base64: bool = False


@dataclass(frozen=True)
class Request:
    prompt: str  # the user message, "<image>\n" + question when there is media
    qformer: str  # the Q-Former prompt (the text the original passes to update_prompt)


@dataclass
class Item:
    qid: object  # written as question_id; unique within a benchmark run
    requests: list[Request]
    media: Media | None
    record: dict = field(default_factory=dict)  # fields copied into the answer row
    uid: str | None = None  # resume/merge key when question ids repeat (MME: two questions per image id)

    @property
    def key(self) -> str:
        from .data import id_key

        return self.uid if self.uid is not None else id_key(self.qid)


def row_key(row: dict) -> str:
    """The resume/merge key of an answers row (see `Item.key`)."""
    from .data import id_key

    return row["uid"] if "uid" in row else id_key(row.get("question_id"))


@dataclass(frozen=True)
class GenerationDefaults:
    """The original script's decoding for this benchmark."""

    max_new_tokens: int = 128
    temperature: float = 0.0


@dataclass
class ScoreSettings:
    """How `llamavid eval score` scores an answers file; each field with a flag is one of its flags."""

    split: str | None = field(default=None, metadata={"help": "as for run; scienceqa: pid_splits key (default test)"})
    submission: Path | None = field(default=None, metadata={"help": "where to write the server upload file"})
    judge_prompts: Path | None = field(
        default=None, metadata={"help": "JSON file with the original scripts' judge wording"}
    )
    fix_consistency_question: bool = field(
        default=False,
        metadata={"help": "show the judge Q2 as the second consistency question (the original shows Q1 twice)"},
    )
    # what the command fills in: the aspects a `vcgbench-<aspect>` name scores, the judge of the video benchmarks
    # (an `llamavid.eval.judge.Judge`), and whether the judge shows a progress bar
    aspects: list[str] | None = field(default=None, metadata={"flag": False})
    judge: object | None = field(default=None, metadata={"flag": False})
    progress: bool = field(default=False, metadata={"flag": False})


@dataclass(frozen=True)
class Benchmark:
    name: str
    layout: str  # one line describing the expected --data folder, used in error messages
    load: Callable[..., list[Item]]  # (data: Path, split: str | None) -> items
    score: Callable[..., dict]  # (data: Path | None, predictions: list[dict], settings: ScoreSettings) -> metrics
    generation: GenerationDefaults = GenerationDefaults()
    make_row: Callable[[Item, list[str], str], dict] | None = None  # (item, texts, model_id) -> row
    video: bool = False
    needs_data_to_score: bool = True


def answer_id(qid, prompt: str, text: str, model_id: str) -> str:
    """Deterministic stand-in for LLaVA's random shortuuid, so a resumed run writes the same file."""
    payload = f"{qid}\x00{prompt}\x00{text}\x00{model_id}".encode()
    return hashlib.sha256(payload).hexdigest()[:22]


def llava_row(item: Item, texts: list[str], model_id: str, prompt: str | None = None) -> dict:
    """LLaVA's answer line: question_id, prompt (the question as the script logged it), text, answer_id, ..."""
    logged = item.record.get("prompt", prompt if prompt is not None else item.requests[0].qformer)
    row = {"question_id": item.qid, "prompt": logged, "text": texts[0]}
    row["answer_id"] = answer_id(item.qid, logged, texts[0], model_id)
    row["model_id"] = model_id
    row["metadata"] = {}
    for key, value in item.record.items():
        if key != "prompt":
            row[key] = value
    return row


def percent(numerator: float, denominator: float) -> float:
    return 100.0 * numerator / denominator if denominator else 0.0


def data_path(data: Path | None, bench: str) -> Path:
    from .data import EvalDataError

    if data is None:
        raise EvalDataError(f"scoring {bench} needs --data (the benchmark folder with the ground truth)")
    return Path(data)


# -- the one shape of a score result (what `eval score --json` prints) -----------------------------------------

TEXT_KEYS = frozenset({"submission"})  # the path of a server upload file written by `score`


def is_breakdown(key: str) -> bool:
    """`per_<part>` holds the benchmark's main metric per part, `<metric>_per_<part>` another metric per part."""
    return key.startswith("per_") or "_per_" in key


def shape_problems(result: dict) -> list[str]:
    """Why `result` does not have the shape every benchmark's result has (empty when it does): each value a number,
    a breakdown key's value a flat object of numbers, `submission` a string.

    Scripts compare benchmarks and runs by reading these keys; one shape lets them do so without a case per
    benchmark, so a score function that drifts from it is a bug to catch before anything is printed."""

    def number(value) -> bool:
        return isinstance(value, int | float) and not isinstance(value, bool)

    problems = []
    for key, value in result.items():
        if key in TEXT_KEYS:
            ok = isinstance(value, str)
        elif is_breakdown(key):
            ok = isinstance(value, dict) and all(isinstance(k, str) and number(v) for k, v in value.items())
        else:
            ok = number(value)
        if not ok:
            problems.append(f"{key}={value!r}")
    return problems
