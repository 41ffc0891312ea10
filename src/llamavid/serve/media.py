"""Media named by a request -> bytes (with limits) -> vision features (cached by content).

Where bytes may come from:
* `data:` URLs (base64), decoded size checked against `max_media_bytes` before decoding;
* `http(s)://` URLs, fetched with a timeout, redirects followed by hand (at most `max_redirects`, and only to
  http(s): a redirect to `file:` or anything else is refused), the body counted while it streams in;
* `file://` URLs and bare paths only under `--allowed-local-media-path` folders, checked after resolving `..` and
  symbolic links.

The cache key is the bytes' sha256 + how they were sampled + the vision tower, so the same video sent twice (by
any route) reuses its features without decoding it again. Videos are decoded from a file in the server's own
temporary folder, deleted as soon as the frames are read.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
import threading
import urllib.parse
from pathlib import Path

import torch

from ..inference.engine import MediaFeatures
from ..inference.features import cache_key
from ..media import MediaError, load_image, load_video
from .errors import APIError
from .schemas import MediaRef
from .settings import ServeSettings


class MediaTooLarge(APIError):
    def __init__(self, what: str, limit: int):
        super().__init__(
            f"{what} is larger than the server's limit of {limit / (1 << 20):g} MB (--max-media-mb)",
            status=413,
        )


class MediaFetcher:
    """URL -> (bytes, or a local path) under the server's limits."""

    def __init__(self, settings: ServeSettings):
        self.settings = settings

    def fetch(self, url: str) -> bytes | Path:
        scheme = urllib.parse.urlsplit(url).scheme.lower() if ":" in url[:12] else ""
        if scheme == "data":
            return self._data_url(url)
        if scheme in ("http", "https"):
            return self._http(url)
        if scheme == "file":
            return self._local(urllib.parse.unquote(urllib.parse.urlsplit(url).path), url)
        if scheme and len(scheme) > 1:  # "c:" would be a Windows drive, handled as a path
            raise APIError(
                f"URL scheme {scheme!r} is not allowed; use data:, http(s):// or an allowed file path"
            )
        return self._local(url, url)

    def _data_url(self, url: str) -> bytes:
        header, comma, payload = url.partition(",")
        if not comma or ";base64" not in header.lower():
            raise APIError("a data: URL must be base64 encoded (data:<type>;base64,<data>)")
        if len(payload) * 3 // 4 > self.settings.max_media_bytes:
            raise MediaTooLarge("the data: URL's content", self.settings.max_media_bytes)
        try:
            return base64.b64decode("".join(payload.split()), validate=True)
        except (binascii.Error, ValueError):
            raise APIError("the data: URL is not valid base64") from None

    def _http(self, url: str) -> bytes:
        import httpx

        limit = self.settings.max_media_bytes
        timeout = httpx.Timeout(self.settings.fetch_timeout_s)
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            for _ in range(self.settings.max_redirects + 1):
                try:
                    with client.stream("GET", url) as response:
                        if response.is_redirect:
                            target = urllib.parse.urljoin(url, response.headers.get("location", ""))
                            if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
                                raise APIError(f"{_short(url)} redirects to a non-http URL; refused")
                            url = target
                            continue
                        if response.status_code >= 400:
                            raise APIError(f"fetching {_short(url)} failed: HTTP {response.status_code}")
                        size = int(response.headers.get("content-length") or 0)
                        if size > limit:
                            raise MediaTooLarge(_short(url), limit)
                        data = bytearray()
                        for chunk in response.iter_bytes():
                            data += chunk
                            if len(data) > limit:
                                raise MediaTooLarge(_short(url), limit)
                        return bytes(data)
                except httpx.TimeoutException:
                    raise APIError(
                        f"fetching {_short(url)} timed out after {self.settings.fetch_timeout_s:g} s",
                    ) from None
                except httpx.HTTPError as error:
                    raise APIError(f"fetching {_short(url)} failed: {type(error).__name__}") from None
        raise APIError(f"{_short(url)}: more than {self.settings.max_redirects} redirects")

    def _local(self, name: str, shown: str) -> Path:
        allowed = self.settings.allowed_local_media_path
        if not allowed:
            raise APIError(
                f"local file {_short(shown)!r} refused: the server reads local files only under "
                "--allowed-local-media-path folders"
            )
        path = Path(name).expanduser()
        resolved = path.resolve() if path.is_absolute() else None
        if resolved is None or not any(resolved.is_relative_to(folder) for folder in allowed):
            raise APIError(f"local file {_short(shown)!r} is outside the allowed media folders")
        if not resolved.is_file():
            raise APIError(f"local file {_short(shown)!r} does not exist")
        if resolved.stat().st_size > self.settings.max_media_bytes:
            raise MediaTooLarge(_short(shown), self.settings.max_media_bytes)
        return resolved


def _short(url: str) -> str:
    return url if len(url) <= 80 else url[:77] + "..."


def digest_of(data: bytes | Path) -> str:
    digest = hashlib.sha256()
    if isinstance(data, Path):
        with open(data, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    else:
        digest.update(data)
    return digest.hexdigest()


class MediaEncoder:
    """Media -> `MediaFeatures` through the engine's feature cache; vision passes run one at a time."""

    def __init__(self, engine, settings: ServeSettings, temp_dir: str | os.PathLike):
        self.engine = engine
        self.settings = settings
        self.temp_dir = Path(temp_dir)
        self.fetcher = MediaFetcher(settings)
        self._lock = threading.Lock()

    def encode(self, ref: MediaRef) -> tuple[MediaFeatures, bool]:
        """Fetch (under the limits) and encode what a request names: (features, whether they were cached)."""
        return self.encode_data(ref, self.fetcher.fetch(ref.url))

    def encode_data(self, ref: MediaRef, data: bytes | Path) -> tuple[MediaFeatures, bool]:
        """Encode bytes or a file the server already trusts (the web page's uploads)."""
        settings = self._sampling(ref)
        key = cache_key(digest_of(data), settings, self.engine.fingerprint)
        with self._lock:
            entry = self.engine.cache.get(key)
        cached = entry is not None
        if not cached:
            pixels, times = self._decode(data, ref, settings)
            with self._lock:
                entry = {
                    "features": self.engine.vision_features(pixels).cpu(),
                    "timestamps": torch.tensor(times, dtype=torch.float64),
                }
                self.engine.cache.put(key, entry)
        features = MediaFeatures(
            entry["features"],
            is_video=ref.kind == "video",
            timestamps=entry["timestamps"].tolist(),
            source=ref.kind,
        )
        return features, cached

    def _sampling(self, ref: MediaRef) -> dict:
        config = self.engine.config
        if ref.kind == "image":
            return {"kind": "image", "pad": config.pad_to_square}
        limit = self.settings.max_frames
        if ref.num_frames is not None and ref.num_frames > limit:
            raise APIError(
                f"num_frames {ref.num_frames} exceeds the server's limit of {limit} (--max-frames)"
            )
        max_frames = min(ref.max_frames or limit, limit)
        return {
            "kind": "video",
            "fps": ref.fps or self.settings.fps,
            "num_frames": ref.num_frames,
            "max_frames": max_frames,
            "size": config.image_size,
        }

    def _decode(self, data: bytes | Path, ref: MediaRef, settings: dict) -> tuple[torch.Tensor, list[float]]:
        from ..model.processing import Video

        processor = self.engine.processor
        try:
            if ref.kind == "image":
                image = load_image(data)
                return processor.preprocess(image), [0.0]
            if isinstance(data, Path):
                clip = self._load_video(data, settings)
            else:
                with tempfile.NamedTemporaryFile(dir=self.temp_dir, suffix=".video") as handle:
                    handle.write(data)
                    handle.flush()
                    clip = self._load_video(Path(handle.name), settings)
            return processor.preprocess(Video(clip.frames)), [float(t) for t in clip.timestamps]
        except MediaError as error:
            raise APIError(f"the {ref.kind} could not be decoded: {error.reason}") from None

    @staticmethod
    def _load_video(path: Path, settings: dict):
        return load_video(
            path,
            fps=settings["fps"],
            num_frames=settings["num_frames"],
            max_frames=settings["max_frames"],
            size=settings["size"],
            progress=False,
        )

    def encode_frames(self, frames) -> MediaFeatures:
        """A frame array (T, H, W, 3) held in memory (the web page's bundled sample)."""
        from ..model.processing import Video

        with self._lock:
            return MediaFeatures(
                self.engine.vision_features(self.engine.processor.preprocess(Video(frames))).cpu(),
                is_video=True,
                timestamps=[float(t) for t in range(len(frames))],
                source="sample",
            )
