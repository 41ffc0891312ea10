"""Media named by a request -> bytes or a local file, under the server's limits.

Where bytes may come from:
* `data:` URLs (base64), decoded size checked against `max_media_bytes` before decoding;
* `http(s)://` URLs, unless `--no-media-urls`: fetched as a server that sits inside a network must fetch
  (SSRF), see below;
* `file://` URLs and bare paths only under `--allowed-local-media-path` folders, checked after resolving `..` and
  symbolic links.

An http(s) URL, on every hop (redirects are followed by hand, at most `max_redirects`, only to http(s)):
* its host must be in `--allowed-media-domains` when that list is given;
* its name is resolved once (`socket.getaddrinfo`, so numeric spellings such as `0x7f000001` resolve too) and every
  address must be public: loopback, private (RFC 1918), link-local, CGNAT, multicast, unspecified, reserved and
  IPv6 local/ULA addresses are refused unless `--allow-internal-media-hosts`;
* the connection goes to the address that was checked, with the URL's name as Host header and TLS server name,
  so a second resolution (DNS rebinding) cannot switch it; proxies from the environment are not used.
The whole download, redirects included, must end within `--fetch-timeout` seconds (a server dripping bytes is cut
off), at most `--max-concurrent-fetches` run at once, and they wait on sockets in the event loop, not in worker
threads, so slow hosts cannot starve other requests. Once a connection was tried, every failure (refused
connection, HTTP error, timeout, refused redirect) gives the same message, so the server cannot be used to tell
open ports from closed ones.

What is fetched is encoded by the model's one media encoder (`llamavid.inference.encoder`), whose cache is
keyed by content: the same video sent twice, by any route, reuses its features without decoding it again.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
import ssl
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import anyio

from .errors import APIError
from .settings import ServeSettings

CGNAT = ipaddress.ip_network("100.64.0.0/10")
REDIRECTS = (301, 302, 303, 307, 308)


class MediaTooLarge(APIError):
    def __init__(self, what: str, limit: int):
        super().__init__(
            f"{what} is larger than the server's limit of {limit / (1 << 20):g} MB (--max-media-mb)",
            status=413,
        )


class FetchFailed(APIError):
    """Any failure once a connection was tried: one text, whatever happened."""

    def __init__(self, url: str):
        super().__init__(f"could not fetch {_short(url)}: the host did not send the file within the server's "
                         "limits (connection, HTTP status, redirects, --fetch-timeout)")


def resolve(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to (blocking; the fetcher runs it in a worker thread)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def address_class(address: str) -> str | None:
    """Why an address is not public ("loopback", "private", ...), or None for a public address."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    checks = (
        ("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast), ("CGNAT", ip.version == 4 and ip in CGNAT),
        ("private", ip.is_private), ("reserved", ip.is_reserved), ("non-public", not ip.is_global),
    )
    return next((name for name, hit in checks if hit), None)


class MediaFetcher:
    """URL -> (bytes, or a local path) under the server's limits. `resolver(host, port)` gives a name's addresses
    (tests point names at loopback servers with it)."""

    def __init__(self, settings: ServeSettings, resolver: Callable[[str, int], list[str]] = resolve):
        self.settings = settings
        self.resolver = resolver
        self._slots = asyncio.Semaphore(settings.max_concurrent_fetches)
        # made once: loading the CA certificates takes a tenth of a second, which would stall the event loop on
        # every fetch
        self._tls = ssl.create_default_context()

    @staticmethod
    def scheme(url: str) -> str:
        return urllib.parse.urlsplit(url).scheme.lower() if ":" in url[:12] else ""

    def is_download(self, url: str) -> bool:
        return self.scheme(url) in ("http", "https")

    async def fetch(self, url: str) -> bytes | Path:
        """Any URL a request may name; http(s) downloads run in the event loop under the fetch deadline."""
        if not self.is_download(url):
            return self.fetch_local(url)
        if not self.settings.media_urls:
            raise APIError("media URLs are turned off on this server (--no-media-urls): send the media inline as "
                           "a data: URL")
        try:
            with anyio.fail_after(self.settings.fetch_timeout_s):  # waiting for a slot counts too
                async with self._slots:
                    return await self._http(url)
        except TimeoutError:
            raise FetchFailed(url) from None

    def fetch_local(self, url: str) -> bytes | Path:
        """`data:` URLs and allowed local files (no network)."""
        scheme = self.scheme(url)
        if scheme == "data":
            return self._data_url(url)
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

    async def _address(self, url: str, first: bool) -> str:
        """The checked address to connect to for `url`; a refusal names its reason on the first hop only (later
        hops answer `FetchFailed`, as any failure after connecting does)."""
        parts = urllib.parse.urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        domains = self.settings.allowed_media_domains
        if domains and host.lower() not in domains:
            if first:
                raise APIError(f"media URLs may only name the hosts in --allowed-media-domains; {host!r} is not one")
            raise FetchFailed(url)
        try:
            port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
            addresses = await anyio.to_thread.run_sync(self.resolver, host, port, abandon_on_cancel=True)
        except (OSError, ValueError, UnicodeError):
            if first:
                raise APIError(f"could not resolve the host of {_short(url)}") from None
            raise FetchFailed(url) from None
        if not addresses:
            raise FetchFailed(url)
        if not self.settings.allow_internal_media_hosts:
            for address in addresses:
                kind = address_class(address)
                if kind is None:
                    continue
                if first:
                    raise APIError(f"{host!r} resolves to a {kind} address; this server fetches media only from "
                                   "public addresses (--allow-internal-media-hosts)")
                raise FetchFailed(url)
        return addresses[0]

    async def _http(self, url: str) -> bytes:
        import httpx

        limit = self.settings.max_media_bytes
        given = url
        # trust_env=False: a proxy from the environment would connect to the name, not to the checked address
        async with httpx.AsyncClient(timeout=self.settings.fetch_timeout_s, follow_redirects=False,
                                     trust_env=False, verify=self._tls) as client:
            for hop in range(self.settings.max_redirects + 1):
                address = await self._address(url, first=hop == 0)
                target = httpx.URL(url)
                headers = {"Host": target.netloc.decode("ascii"), "Accept-Encoding": "identity"}
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
                try:
                    async with client.stream("GET", target.copy_with(host=address), headers=headers,
                                             extensions=extensions) as response:
                        if response.status_code in REDIRECTS:
                            url = urllib.parse.urljoin(url, response.headers.get("location", ""))
                            if self.scheme(url) not in ("http", "https"):
                                raise FetchFailed(given)
                            continue
                        if response.status_code != 200:
                            raise FetchFailed(given)
                        declared = response.headers.get("content-length", "")
                        if declared.isdigit() and int(declared) > limit:
                            raise MediaTooLarge(_short(given), limit)
                        data = bytearray()
                        async for chunk in response.aiter_raw():
                            data += chunk
                            if len(data) > limit:
                                raise MediaTooLarge(_short(given), limit)
                        return bytes(data)
                except (httpx.HTTPError, OSError, ValueError):
                    raise FetchFailed(given) from None
        raise FetchFailed(given)

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
