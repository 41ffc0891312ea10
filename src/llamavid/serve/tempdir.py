"""The server's private temporary folder (uploads, videos received as bytes), and the sweep of folders left by
servers that were killed (SIGKILL, out of memory) before they could remove their own.

Each folder holds an `owner` file with its server's process id; at start-up a server removes the folders of the
same prefix whose owner is no longer running. A folder whose owner file is missing or unreadable is left alone
(it may belong to a server that is starting now). Servers in different process namespaces (containers) that share
one temporary folder cannot see each other's processes: give each its own `TMPDIR`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "llamavid-serve-"
OWNER = "owner"


class ServerTempDir:
    def __init__(self, parent: str | os.PathLike | None = None):
        self.parent = Path(parent or tempfile.gettempdir())
        self.swept = sweep(self.parent)
        self.path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=self.parent))
        (self.path / OWNER).write_text(str(os.getpid()))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def sweep(parent: Path) -> list[Path]:
    """Remove the folders of servers that are not running any more; returns them."""
    removed = []
    for folder in parent.glob(PREFIX + "*"):
        try:
            pid = int((folder / OWNER).read_text().strip())
        except (OSError, ValueError):
            continue
        if pid != os.getpid() and not _running(pid):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
