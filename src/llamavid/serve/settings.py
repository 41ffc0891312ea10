"""What an operator can tune about the server: limits, batching, access. Checked once, at start-up.

Each field is one `llamavid serve` flag (`--max-media-mb` for `max_media_mb`, unless its metadata names another);
the command line is derived from this class, so a field added here is a flag with its help text. Defaults are
the safe choice for a server on a network (docs/serving.md, "Deploying the server"); flags that exist in vLLM
have its names.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError

MB = 1 << 20
MEDIA_KINDS = ("image", "video")
DEFAULT_MEDIA_LIMITS = '{"image": 16, "video": 4}'
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")


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
        default=None,
        metadata=_flag("require 'Authorization: Bearer KEY' on /v1 (or set LLAMAVID_API_KEY); the web page then asks "
                       "for a login whose password is KEY (any user name)", "access"),
    )
    media_urls: bool = field(
        default=True,
        metadata=_flag("refuse http(s) media URLs (data: URLs and --allowed-local-media-path files still work)",
                       "access", flag="--no-media-urls"),
    )
    allowed_media_domains: list[str] = field(
        default_factory=list,
        metadata=_flag("fetch media URLs only from these host names (exact match); repeatable; default: any public "
                       "host", "access", metavar="HOST"),
    )
    allow_internal_media_hosts: bool = field(
        default=False,
        metadata=_flag("let media URLs reach loopback, private, link-local and other non-public addresses (refused "
                       "by default, on every redirect hop)", "access"),
    )
    allowed_hosts: list[str] = field(
        default_factory=list,
        metadata=_flag("Host header values the server answers; repeatable; default: localhost, 127.0.0.1 and ::1 "
                       "when bound to a loopback address, any otherwise", "access", metavar="HOST"),
    )
    allowed_origins: list[str] = field(
        default_factory=list,
        metadata=_flag("origins whose pages may call /v1 from a browser (CORS); repeatable; none by default",
                       "access", metavar="ORIGIN"),
    )
    bind_host: str = field(default="127.0.0.1", metadata={"flag": False})  # --host, which the command owns
    max_body_mb: float = field(
        default=100.0, metadata=_flag("largest request body, counted while it is read (chunked uploads too)", "limits")
    )
    max_media_mb: float = field(
        default=64.0, metadata=_flag("largest image or video, after base64 decoding or download", "limits")
    )
    max_frames: int = field(
        default=64, metadata=_flag("most frames taken from a video; longer ones are sampled uniformly", "limits")
    )
    fps: float | None = field(
        default=None,
        metadata=_flag("video sampling rate when a request does not say (default: the model's video_fps, 1 for the "
                       "releases)", "limits"),
    )
    fetch_timeout_s: float = field(
        default=10.0, metadata=_flag("seconds for a whole http(s) media download (redirects and the wait for a "
                                     "fetch slot included)", "limits", flag="--fetch-timeout")
    )
    max_redirects: int = field(
        default=3, metadata=_flag("redirects followed when fetching a media URL (each hop checked again)", "limits")
    )
    max_concurrent_fetches: int = field(
        default=8, metadata=_flag("media URLs downloaded at once; further ones wait their turn", "limits")
    )
    limit_mm_per_prompt: str = field(
        default=DEFAULT_MEDIA_LIMITS,
        metadata=_flag("most images and videos in one request, as JSON (vLLM's flag)", "limits", metavar="JSON"),
    )
    max_prompt_chars: int = field(
        default=200_000, metadata=_flag("longest text of a request (all messages), checked before tokenizing",
                                        "limits")
    )
    max_decoded_frames: int = field(
        default=20_000,
        metadata=_flag("most frames decoded from one video (counted while decoding; a video decoded straight "
                       "through whose container counts more is refused before decoding)", "limits"),
    )
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
            "--max-concurrent-fetches": self.max_concurrent_fetches, "--max-prompt-chars": self.max_prompt_chars,
            "--max-decoded-frames": self.max_decoded_frames,
        }
        for flag, value in positive.items():
            if value is not None and value <= 0:
                raise UsageError(f"{flag} must be positive, got {value}")
        if self.batch_wait_ms < 0:
            raise UsageError(f"--batch-wait-ms must be >= 0, got {self.batch_wait_ms}")
        if self.max_redirects < 0:
            raise UsageError(f"--max-redirects must be >= 0, got {self.max_redirects}")
        if self.sample_video is not None and not Path(self.sample_video).is_file():
            raise UsageError(f"--sample-video {self.sample_video}: no such file")
        if self.api_key is None:
            self.api_key = os.environ.get("LLAMAVID_API_KEY") or None
        self.media_limits = _media_limits(self.limit_mm_per_prompt)
        self.allowed_media_domains = [name.lower().rstrip(".") for name in self.allowed_media_domains]
        if not self.allowed_hosts and _is_loopback(self.bind_host):
            self.allowed_hosts = list(LOOPBACK_HOSTS)

    @property
    def answered_hosts(self) -> list[str] | None:
        """Host header names the server answers (lowercase, IPv6 in brackets as the header writes it); None: any."""
        if not self.allowed_hosts or "*" in self.allowed_hosts:
            return None
        return [f"[{name.strip('[]')}]" if ":" in name else name.lower() for name in self.allowed_hosts]

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    @property
    def max_media_bytes(self) -> int:
        return int(self.max_media_mb * MB)


def _media_limits(text: str) -> dict[str, int]:
    """`--limit-mm-per-prompt` as vLLM writes it, '{"image": 16, "video": 4}'; a kind left out keeps its default."""
    limits = json.loads(DEFAULT_MEDIA_LIMITS)
    try:
        given = json.loads(text)
    except json.JSONDecodeError:
        given = None
    if not isinstance(given, dict) or any(k not in MEDIA_KINDS or not isinstance(v, int) or isinstance(v, bool)
                                          or v < 0 for k, v in given.items()):
        raise UsageError(f"--limit-mm-per-prompt {text}: expected JSON such as {DEFAULT_MEDIA_LIMITS} "
                         "(counts >= 0 for 'image' and 'video')")
    return {**limits, **given}


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
