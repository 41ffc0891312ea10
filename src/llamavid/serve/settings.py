"""What an operator can tune about the server: limits, batching, access. Checked once, at start-up.

Each field is one `llamavid serve` flag (`--max-media-mb` for `max_media_mb`, unless its metadata names another);
the command line is derived from this class, so a field added here is a flag with its help text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

MB = 1 << 20


def _flag(help: str, group: str, **extra) -> dict:
    return {"help": help, "group": group, **extra}


@dataclass
class ServeSettings:
    """Server options."""

    model_name: str | None = field(
        default=None,
        metadata=_flag("the model id /v1/models reports and requests may name (default: the folder's name)", "model",
                       flag="--served-model-name"),
    )
    allowed_local_media_path: list[Path] = field(
        default_factory=list,
        metadata=_flag("let requests name files under DIR (file:// URLs or paths); repeatable; none by default",
                       "access", metavar="DIR"),
    )
    api_key: str | None = field(
        default=None, metadata=_flag("require 'Authorization: Bearer KEY' on /v1 (or set LLAMAVID_API_KEY)", "access")
    )
    max_body_mb: float = field(
        default=100.0, metadata=_flag("largest request body, counted while it is read (chunked uploads too)", "limits")
    )
    max_media_mb: float = field(
        default=64.0, metadata=_flag("largest image or video, after base64 decoding or download", "limits")
    )
    max_frames: int = field(
        default=64, metadata=_flag("most frames taken from a video; longer ones are sampled uniformly", "limits")
    )
    fps: float = field(default=1.0, metadata=_flag("video sampling rate when a request does not say", "limits"))
    fetch_timeout_s: float = field(
        default=10.0, metadata=_flag("seconds to connect to and read an http(s) media URL", "limits",
                                     flag="--fetch-timeout")
    )
    max_redirects: int = field(default=3, metadata=_flag("redirects followed when fetching a media URL", "limits"))
    default_max_tokens: int = field(
        default=512, metadata=_flag("answer length when a request gives no max_tokens", "limits")
    )
    max_batch_size: int = field(default=16, metadata=_flag("requests generated together", "batching"))
    batch_wait_ms: float = field(
        default=20.0, metadata=_flag("how long a request waits for others to batch with", "batching")
    )
    log_prompts: bool = field(default=False, metadata=_flag("include the prompt text in the request log", "logging"))
    web: bool = field(default=True, metadata=_flag("serve the API only, no web page at /", "web", flag="--no-web"))
    sample_video: Path | None = field(
        default=None, metadata=_flag("the web page's sample video (default: the bundled demo sample)", "web")
    )

    def __post_init__(self):
        self.model_name = self.model_name or "llamavid"
        self.allowed_local_media_path = [Path(p).expanduser().resolve() for p in self.allowed_local_media_path]
        for folder in self.allowed_local_media_path:
            if not folder.is_dir():
                raise UsageError(f"--allowed-local-media-path {folder}: not a folder")
        positive = {
            "--max-body-mb": self.max_body_mb, "--max-media-mb": self.max_media_mb,
            "--max-frames": self.max_frames, "--fps": self.fps, "--fetch-timeout": self.fetch_timeout_s,
            "--max-batch-size": self.max_batch_size, "--default-max-tokens": self.default_max_tokens,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise UsageError(f"{flag} must be positive, got {value}")
        if self.batch_wait_ms < 0:
            raise UsageError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if self.max_redirects < 0:
            raise UsageError(f"--max-redirects must be >= 0, got {self.max_redirects}")
        if self.sample_video is not None and not Path(self.sample_video).is_file():
            raise UsageError(f"--sample-video {self.sample_video}: no such file")
        if self.api_key is None:
            self.api_key = os.environ.get("LLAMAVID_API_KEY") or None

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    @property
    def max_media_bytes(self) -> int:
        return int(self.max_media_mb * MB)
