"""Reading benchmark files, with one-line errors that name the file and the layout we expected.

Every benchmark reads its files through these helpers so that a user who points `--data` at the wrong folder
sees which file is missing and where it should be, never a traceback. Question ids are compared as strings
(`id_key`): the official SEED script silently scores ids written as strings 0%, we treat 12 and "12" alike.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ..atomic_files import atomic_write, write_text_atomically
from ..errors import LlamaVidError


class EvalDataError(LlamaVidError, ValueError):
    """A benchmark file is missing or malformed; the message is one line naming the file."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def id_key(value) -> str:
    """Canonical form of a question id: 12, 12.0 and "12" are the same question."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def require_file(path: Path, layout: str) -> Path:
    if not path.is_file():
        raise EvalDataError(f"missing {path}; expected layout: {layout}")
    return path


def read_json(path: Path, layout: str):
    require_file(path, layout)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EvalDataError(f"{path} is not valid JSON ({error}); expected layout: {layout}") from None


def read_jsonl(path: Path, layout: str) -> list[dict]:
    """A JSON-lines file; blank lines are skipped, any other unparsable line is an error naming it."""
    require_file(path, layout)
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise EvalDataError(f"{path}:{number} is not a JSON line ({error}); expected layout: {layout}") from None
    return rows


def read_predictions(path: Path) -> list[dict]:
    """An answers file: JSON lines (ours, LLaVA's, the original video scripts') or one JSON list."""
    path = Path(path)
    if path.is_file() and path.read_bytes()[:1] == b"[":
        data = read_json(path, "a JSON list of answer records")
        return list(data)
    return read_jsonl(path, "one JSON answer record per line")


def read_tsv(path: Path, layout: str) -> list[dict]:
    """A tab-separated table with a header row (MMBench), read with the csv module (no pandas)."""
    require_file(path, layout)
    csv.field_size_limit(sys.maxsize)  # base64 images sit in cells
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def require_keys(row: dict, keys: tuple[str, ...], path: Path, layout: str) -> None:
    missing = [key for key in keys if key not in row]
    if missing:
        raise EvalDataError(f"{path}: a record lacks {', '.join(missing)}; expected layout: {layout}")


def find_media(data: Path, name: str, folders: tuple[str, ...], layout: str) -> Path:
    """The first `folder/name` that exists under `data` (the folders users unpack media into)."""
    for folder in folders:
        candidate = data / folder / name
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(data / folder / name) for folder in folders)
    raise EvalDataError(f"missing media file {name} (looked at {tried}); expected layout: {layout}")


VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")  # the original's search order


def find_video(data: Path, stem: str, folders: tuple[str, ...], layout: str) -> Path:
    """`stem` + the first extension that exists, tried in the original's order, in each folder."""
    for folder in folders:
        for extension in VIDEO_EXTENSIONS:
            candidate = data / folder / f"{stem}{extension}"
            if candidate.is_file():
                return candidate
    where = " or ".join(str(data / folder) for folder in folders)
    raise EvalDataError(f"missing video {stem}.(mp4|avi|mov|mkv) in {where}; expected layout: {layout}")


def write_json(path: Path, value) -> Path:
    """Write JSON atomically (temporary name, then rename)."""
    return write_text_atomically(path, json.dumps(value))


def write_jsonl(path: Path, rows) -> Path:
    with atomic_write(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return Path(path)
