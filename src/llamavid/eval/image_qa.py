"""Questions in LLaVA's `model_vqa_loader` format (GQA, MME, POPE, SEED, VizWiz, VQAv2).

One JSON line per question, `{question_id, image, text, ...}`; the prompt is "<image>\\n" + `text` in one user turn,
the Q-Former sees `text` verbatim (answer-format suffix and newline included), images are padded to a square per
the model config, greedy decoding with 128 new tokens.
"""

from __future__ import annotations

from pathlib import Path

from .base import Item, Media, Request
from .data import EvalDataError, find_media, read_jsonl, require_keys

SHORT_ANSWER = "Answer the question using a single word or phrase."


def image_item(qid, image: Path | str, text: str, record: dict | None = None) -> Item:
    return Item(
        qid=qid,
        requests=[Request(prompt="<image>\n" + text, qformer=text)],
        media=Media("image", str(image)),
        record={"prompt": text, **(record or {})},
    )


def load_llava_questions(
    data: Path, filename: str, image_folders: tuple[str, ...], layout: str, repeated_ids: bool = False
) -> list[Item]:
    """`repeated_ids`: the file gives several questions one id (MME: the image path), so items get a
    `uid` of id + occurrence number for resuming."""
    path = Path(data) / filename
    rows = read_jsonl(path, layout)
    items, seen = [], {}
    for row in rows:
        require_keys(row, ("question_id", "image", "text"), path, layout)
        occurrence = seen.get(row["question_id"], 0)
        if occurrence and not repeated_ids:
            raise EvalDataError(f"{path}: question_id {row['question_id']!r} appears twice")
        seen[row["question_id"]] = occurrence + 1
        image = find_media(Path(data), row["image"], image_folders, layout)
        item = image_item(row["question_id"], image, row["text"])
        if repeated_ids:
            item.uid = f"{row['question_id']}#{occurrence}"
        items.append(item)
    return items


def questions_by_id(data: Path, filename: str, layout: str) -> tuple[list[dict], dict]:
    """The question file's rows in order, and a lookup by canonical id."""
    from .data import id_key

    rows = read_jsonl(Path(data) / filename, layout)
    return rows, {id_key(row["question_id"]): row for row in rows}


def predictions_by_id(predictions: list[dict], field: str = "text") -> dict[str, str]:
    """question id -> answer text; a later line for the same id wins (as the official dict comprehensions)."""
    from .data import id_key

    return {id_key(row["question_id"]): row.get(field, "") for row in predictions if "question_id" in row}
