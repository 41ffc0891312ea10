"""Weights files that live outside the Hugging Face hub (LAVIS's EVA-ViT-G and InstructBLIP files), downloaded
with huggingface_hub's own transfer code (resumable, retried, with a progress bar) and verified before use.

A download goes to `NAME.part` beside its destination and is renamed into place only once its checksum
matches, so an interrupted transfer resumes and a corrupted one is deleted, never used. The checksum is the one
pinned (in the release table, or by the user with `--eva-sha256`), else the one the server publishes (the
standard `Repr-Digest`/`Digest` SHA-256, or the MD5 of Google Cloud Storage's `x-goog-hash` or `Content-MD5`);
a file with neither is refused. Files the user names by URL get a download name made from the URL (see
`RemoteFile.from_url`), never a path taken from it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import sys
from pathlib import Path

from ..errors import ModelLoadError
from .releases import RemoteFile


class ChecksumError(ModelLoadError):
    """A download whose content does not match the checksum it was published with."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's error base (huggingface_hub's session is an httpx-style client), plus the hub's."""
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.utils import get_session

    client_module = sys.modules[type(get_session()).__module__.split(".")[0]]
    return (OSError, HfHubHTTPError, getattr(client_module, "HTTPError", OSError))


def _offline() -> bool:
    from huggingface_hub import constants

    check = getattr(constants, "is_offline_mode", None)  # huggingface_hub >= 2; before, only the flag
    return check() if check else bool(constants.HF_HUB_OFFLINE)


def server_md5(headers) -> str | None:
    """The MD5 a storage server publishes: Google Cloud Storage's `x-goog-hash: crc32c=..,md5=<base64>`, or
    `Content-MD5`; as hex."""
    values = [headers.get("x-goog-hash") or "", headers.get("content-md5") or ""]
    for part in ",".join(values).split(","):
        part = part.strip()
        if part.startswith("md5="):
            part = part[len("md5=") :]
        elif not part or "=" in part.rstrip("="):
            continue
        try:
            return base64.b64decode(part, validate=True).hex()
        except ValueError:
            continue
    return None


def server_sha256(headers) -> str | None:
    """The SHA-256 a server publishes in the standard digest headers, `Repr-Digest: sha-256=:<base64>:` (RFC
    9530) or `Digest: SHA-256=<base64>` (RFC 3230); as hex."""
    for header in ("repr-digest", "digest"):
        for part in (headers.get(header) or "").split(","):
            algorithm, _, value = part.strip().partition("=")
            if algorithm.lower() != "sha-256":
                continue
            try:
                return base64.b64decode(value.strip().strip(":"), validate=True).hex()
            except ValueError:
                continue
    return None


def _digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_remote_file(remote: RemoteFile, folder: Path, how_to_skip: str) -> Path:
    """`folder/<remote.path>`, downloaded and verified unless it already is; `how_to_skip` tells the user how to
    give a local copy instead (it ends every error message)."""
    target = Path(folder) / remote.path
    if not target.resolve().is_relative_to(Path(folder).resolve()):  # `RemoteFile.from_url` names never do this
        raise ModelLoadError(f"{remote.name}: the download name {remote.path!r} leaves the download folder")
    if target.is_file():
        if remote.sha256 is not None:
            check_sha256(target, remote.sha256, remote.name, f"delete {target} to download it again, or {how_to_skip}")
        return target
    if _offline():
        raise ModelLoadError(
            f"{remote.name} is not downloaded yet and HF_HUB_OFFLINE is set; {how_to_skip}"
        )
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import get_session

    url = remote.url
    errors = _transport_errors()
    try:
        head = get_session().head(url, follow_redirects=True)
    except errors as error:
        raise ModelLoadError(f"cannot reach {url} for {remote.name} ({error}); {how_to_skip}") from error
    if head.status_code >= 400:
        raise ModelLoadError(f"{url} answered HTTP {head.status_code} for {remote.name}; {how_to_skip}")
    if remote.sha256:
        algorithm, expected = "sha256", remote.sha256
    elif server_sha256(head.headers):
        algorithm, expected = "sha256", server_sha256(head.headers)
    else:
        algorithm, expected = "md5", server_md5(head.headers)
    if expected is None:
        raise ChecksumError(
            f"{url} publishes no checksum for {remote.name}, so a download could not be verified; {how_to_skip}"
        )
    size = int(head.headers["content-length"]) if "content-length" in head.headers else None
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    if size is not None and done > size:  # a different file than the one being published now
        partial.unlink()
        done = 0
    try:
        with partial.open("ab") as handle:
            http_get(url, handle, resume_size=done, expected_size=size, displayed_filename=target.name)
    except errors as error:
        raise ModelLoadError(
            f"downloading {remote.name} from {url} failed ({error}); run again to resume, or {how_to_skip}"
        ) from error
    actual = _digest(partial, algorithm)
    if actual != expected:
        partial.unlink()
        raise ChecksumError(
            f"the download of {remote.name} from {url} is corrupt ({algorithm} {actual}, published {expected}) "
            f"and was deleted; run again, or {how_to_skip}"
        )
    os.replace(partial, target)
    return target


def check_sha256(path: Path, expected: str, what: str, how_to_fix: str) -> None:
    """Refuse `path` unless its SHA-256 is `expected` (hex, any case)."""
    actual = _digest(path, "sha256")
    if actual != expected.lower():
        raise ChecksumError(f"{what} ({path}) has sha256 {actual}, not the {expected.lower()} given; {how_to_fix}")


__all__ = ["ChecksumError", "check_sha256", "fetch_remote_file", "server_md5", "server_sha256"]
