"""Files that appear whole or not at all.

Outputs that another process may read while they are written (feature files, subtitles, answers, cached
features, the toy tokenizers every rank of a distributed run writes) and outputs a killed run must not leave
half-written are written under a private temporary name beside the target and renamed over it. A rename within
one folder is atomic, so a reader sees the old file or the new one, never a mix; two writers of the same file
each rename their own complete copy.

Temporary names are ``.<name>.<pid>-<thread>.partial``: hidden, never taken for an output, and unique to the
writer, so `leftovers` can find what a killed run left for a target without touching a file that another live
process is still writing under its own name.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

PARTIAL_SUFFIX = ".partial"


def partial_path(target: str | os.PathLike) -> Path:
    """The temporary name this process and thread write `target` under."""
    target = Path(target)
    return target.with_name(f".{target.name}.{os.getpid()}-{threading.get_ident()}{PARTIAL_SUFFIX}")


@contextlib.contextmanager
def atomic_write(target: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary path to write; when the block ends without an error it replaces `target`.

    On an error (or an interrupt) the temporary file is removed and `target` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = partial_path(target)
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomically(target: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    with atomic_write(target) as temporary:
        temporary.write_text(text, encoding=encoding)
    return Path(target)


def leftovers(target: str | os.PathLike) -> list[Path]:
    """Temporary files of `target` in its folder, from any writer (a killed run's among them)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    return sorted(target.parent.glob(f".{glob.escape(target.name)}.*{PARTIAL_SUFFIX}"))


def replace_folder(finished: str | os.PathLike, target: str | os.PathLike, aside: str | os.PathLike) -> Path:
    """Put the folder `finished` (written in full elsewhere on the same file system) at `target`. A folder already
    there is first renamed to `aside`, then removed once the new one is in place: between the two renames no
    reader can find a half-replaced folder, only the old one, nothing for an instant, or the new one."""
    target, aside = Path(target), Path(aside)
    if target.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(target, aside)
        os.replace(finished, target)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        os.replace(finished, target)
    return target


__all__ = ["PARTIAL_SUFFIX", "atomic_write", "leftovers", "partial_path", "replace_folder", "write_text_atomically"]
