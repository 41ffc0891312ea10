"""What an operator can tune about the server: limits, batching, access. Checked once, at start-up."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

MB = 1 << 20


@dataclass
class ServeSettings:
    """Server options; every field has a `llamavid serve` flag of the same name."""

    model_name: str = "llamavid"
    """The id `/v1/models` reports and requests may name."""
    allowed_local_media_path: list[Path] = field(default_factory=list)
    """Folders whose files requests may name as `file://` URLs or paths (vLLM's flag); none by default."""
    api_key: str | None = None
    """When set, `/v1/*` requires `Authorization: Bearer <key>`."""
    max_body_bytes: int = 100 * MB
    """Largest request body, counted while it is read (chunked uploads included)."""
    max_media_bytes: int = 64 * MB
    """Largest single image or video after base64 decoding or download."""
    max_frames: int = 64
    """Most frames taken from one video; longer videos are sampled uniformly down to this."""
    fps: float = 1.0
    """Default video sampling rate when a request does not say."""
    fetch_timeout_s: float = 10.0
    """Connect/read timeout for http(s) media URLs."""
    max_redirects: int = 3
    max_batch_size: int = 16
    """Requests generated together in one left-padded batch."""
    batch_wait_ms: float = 20.0
    """How long the scheduler waits for company after the first request of a batch arrives."""
    default_max_tokens: int = 512
    """Answer length when a request gives neither `max_tokens` nor `max_completion_tokens`."""
    log_prompts: bool = False
    """Log the prompt text of each request (off: logs carry counts and timings only)."""
    web: bool = True
    """Mount the Gradio demo at `/`."""

    def __post_init__(self):
        self.allowed_local_media_path = [Path(p).expanduser().resolve() for p in self.allowed_local_media_path]
        for folder in self.allowed_local_media_path:
            if not folder.is_dir():
                raise ValueError(f"--allowed-local-media-path {folder}: not a folder")
        positive = {
            "--max-body-mb": self.max_body_bytes, "--max-media-mb": self.max_media_bytes,
            "--max-frames": self.max_frames, "--fps": self.fps, "--fetch-timeout": self.fetch_timeout_s,
            "--max-batch-size": self.max_batch_size, "--default-max-tokens": self.default_max_tokens,
        }
        for flag, value in positive.items():
            if value <= 0:
                raise ValueError(f"{flag} must be positive, got {value}")
        if self.batch_wait_ms < 0:
            raise ValueError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if self.api_key is None:
            self.api_key = os.environ.get("LLAMAVID_API_KEY") or None
