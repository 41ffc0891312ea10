"""MMBench (`mmbench_dev_20230712.tsv`, the CN or test tsv likewise; base64 images inside the table).

Prompts as `model_vqa_mmbench.py --single-pred-prompt`, one round: options read in order A, B, C, D up to the
first empty one (pandas' missing-value spellings such as "nan"/"None"/"NA" count as empty, as pandas reads them);
question = hint + "\\n" (when present) + question + "\\nX. option" per option; the user message is "<image>\\n" +
that + "\\n" + "Answer with the option's letter from the given choices directly." (`--lang cn`: "请直接回答选项字母。");
the Q-Former sees it without the suffix; images padded to a square; 1024 new tokens.

Scoring happens on the OpenCompass server; `score` writes its .xlsx (the tsv minus hint, category, source, image,
comment and l2-category, a `prediction` column inserted at position 6). For a table with answers (dev) it also
computes a local approximation of the server's circular evaluation: rows sharing `index % 1e6` are one question
in rotated option orders, correct only when every rotation is; the letter is read from the answer's start
("B", "B.", "(B)", "B) ...") or as the text of an option (the server falls back to a GPT matcher instead).
"""

from __future__ import annotations

import re
from pathlib import Path

from .base import Benchmark, GenerationDefaults, Item, Media, Request, ScoreSettings, data_path, percent
from .data import EvalDataError, id_key, read_tsv
from .xlsx import write_xlsx

LAYOUT = "mmbench/mmbench_dev_20230712.tsv (or another MMBench tsv, chosen with --split FILE_STEM)"
DEFAULT_TABLE = "mmbench_dev_20230712"
SUFFIX_EN = "Answer with the option's letter from the given choices directly."
SUFFIX_CN = "请直接回答选项字母。"
LETTERS = ("A", "B", "C", "D")
# pandas' default missing-value strings (read_table turns these into NaN, which the script treats as "no option")
_MISSING = {
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A", "NA",
    "NULL", "NaN", "None", "n/a", "nan", "null",
}
_DROPPED = ("hint", "category", "source", "image", "comment", "l2-category")
_LEADING_LETTER = re.compile(r"^\(?([A-D])(?:[).:,\s]|$)")


def is_none(value) -> bool:
    return value is None or value in _MISSING or value.lower() in ("nan", "none")


def table_path(data: Path, split: str | None) -> Path:
    return Path(data) / f"{split or DEFAULT_TABLE}.tsv"


def load(data: Path, split: str | None = None, lang: str = "en"):
    path = table_path(data, split)
    suffix = SUFFIX_CN if (lang == "cn" or "_cn_" in path.name) else SUFFIX_EN
    items = []
    for row in read_tsv(path, LAYOUT):
        for key in ("index", "question", "image"):
            if key not in row:
                raise EvalDataError(f"{path} has no '{key}' column; expected layout: {LAYOUT}")
        options = []
        for letter in LETTERS:
            if is_none(row.get(letter)):
                break
            options.append(row[letter])
        question = row["question"]
        if not is_none(row.get("hint")):
            question = row["hint"] + "\n" + question
        for letter, option in zip(LETTERS, options, strict=False):
            question += f"\n{letter}. {option}"
        qid = int(row["index"]) if row["index"].strip().lstrip("-").isdigit() else row["index"]
        items.append(
            Item(
                qid,
                [Request(f"<image>\n{question}\n{suffix}", question)],
                Media("image", row["image"], base64=True),
                {"prompt": question, "round_id": 0, "options": options, "option_char": list(LETTERS[: len(options)])},
            )
        )
    return items


def extract_letter(text: str, options: dict[str, str]) -> str | None:
    text = text.strip()
    match = _LEADING_LETTER.match(text)
    if match and match.group(1) in options:
        return match.group(1)
    for letter, option in options.items():
        if text.rstrip(".").strip().lower() == option.strip().lower():
            return letter
    return None


def score(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    settings = settings or ScoreSettings()
    path = table_path(data_path(data, "mmbench"), settings.split)
    table = read_tsv(path, LAYOUT)
    answers = {id_key(row["question_id"]): row.get("text", "") for row in predictions if "question_id" in row}
    result: dict = {}
    header = [key for key in table[0] if key not in _DROPPED] if table else []
    header.insert(6, "prediction")
    upload_rows = []
    for row in table:
        values = [row[key] for key in header if key != "prediction"]
        values.insert(6, answers.get(id_key(row["index"])))
        upload_rows.append(values)
    target = Path(settings.submission or path.with_name(f"{path.stem}_upload.xlsx"))
    write_xlsx(target, header, upload_rows)
    result["submission"] = str(target)
    if table and "answer" in table[0] and not all(is_none(row.get("answer")) for row in table):
        groups: dict[int, bool] = {}
        missing = 0
        for row in table:
            text = answers.get(id_key(row["index"]))
            missing += text is None
            choices = {letter: row[letter] for letter in LETTERS if not is_none(row.get(letter))}
            ok = text is not None and extract_letter(text, choices) == row["answer"].strip()
            group = int(float(row["index"])) % 1_000_000
            groups[group] = groups.get(group, True) and ok
        result.update(
            {"accuracy": percent(sum(groups.values()), len(groups)), "missing": missing}
        )
    return result


BENCHMARK = Benchmark(
    name="mmbench", layout=LAYOUT, load=load, score=score, generation=GenerationDefaults(max_new_tokens=1024)
)
