"""Media named by a request -> bytes or a local file, under the server's limits.

Where bytes may come from:
* `data:` URLs (base64), decoded size checked against `max_media_bytes` before decoding;
* `http(s)://` URLs, fetched with a timeout, redirects followed by hand (at most `max_redirects`, and only to
  http(s): a redirect to `file:` or anything else is refused), the body counted while it streams in;
* `file://` URLs and bare paths only under `--allowed-local-media-path` folders, checked after resolving `..` and
  symbolic links.

What is fetched is encoded by the model's one media encoder (`llamavid.inference.encoder`), whose cache is
keyed by content: the same video sent twice, by any route, reuses its features without decoding it again.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from pathlib import Path

from .errors import APIError
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
