"""Output folders checked before a command loads a model: a folder that cannot be written is one clear message
at once, not a traceback after minutes of loading weights (or hours of converting them)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..errors import UsageError


def check_writable_folder(path: str | os.PathLike, flag: str) -> Path:
    """`path` as a Path, once a file could be written in it (or, where it does not exist yet, in the nearest
    folder above it, where it will be made). Nothing is left behind: the probe is an anonymous temporary file.

    Permission bits alone would not tell (root ignores them; a read-only mount or a full quota does not show in
    them), so the probe writes."""
    folder = Path(path).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{flag} {path}: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(f"{flag} {path}: cannot write in {existing} ({error.strerror or error})") from None
    return folder


__all__ = ["check_writable_folder"]
