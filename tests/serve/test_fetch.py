"""Media URLs fetched as a server inside a network must (in process, loopback only): every internal address class
refused after resolving, on every redirect hop, the connection going to the address that was checked, the
allow-list, URL fetching off, the whole-download deadline, and one message for every failed fetch. Names are
pointed at loopback servers this test starts by the fetcher's resolver; a recording server proves that a refused
URL was never fetched."""

from __future__ import annotations

import asyncio
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llamavid.serve import fetch as fetch_module
from llamavid.serve.errors import APIError
from llamavid.serve.fetch import FetchFailed, MediaFetcher, address_class
from llamavid.serve.settings import ServeSettings
from llamavid.testing import drip

PAYLOAD = b"\x89PNG fake image bytes"


class _Recorder(BaseHTTPRequestHandler):
    """Answers /file with PAYLOAD, /hop?to=URL with a 302, /drip with a byte every 0.2 s; records every request
    (path and Host header) on its server."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.server.seen.append((self.path, self.headers.get("Host")))
        if self.path == "/file":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path.startswith("/hop?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drip":
            drip(self, pause=0.2)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def log_message(self, *args):
        pass


def _start(address: str, family=None):
    class Server(ThreadingHTTPServer):
        daemon_threads = True

    if family is not None:
        Server.address_family = family
    server = Server((address, 0), _Recorder)
    server.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def recorder():
    """A media host on 127.0.0.1: what internal names point at."""
    server = _start("127.0.0.1")
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def public_host():
    """A media host on [::1], which the tests that need a "public" host let through (`treat_as_public`)."""
    import socket

    server = _start("::1", socket.AF_INET6)
    yield server
    server.shutdown()


@pytest.fixture
def treat_as_public(monkeypatch):
    """Let ::1 count as public (the stand-in for a public host); every other address keeps its class."""
    real = address_class
    monkeypatch.setattr(fetch_module, "address_class", lambda address: None if address == "::1" else real(address))


def fetch(url: str, resolver=None, **settings):
    options = {"web": False, "fetch_timeout_s": 5.0, **settings}
    fetcher = MediaFetcher(ServeSettings(**options), **({"resolver": resolver} if resolver else {}))
    return asyncio.run(fetcher.fetch(url))


INTERNAL = {
    "loopback": "127.0.0.1", "private 10/8": "10.1.2.3", "private 172.16/12": "172.16.5.4",
    "private 192.168/16": "192.168.1.1", "link-local (cloud metadata)": "169.254.169.254", "CGNAT": "100.64.0.1",
    "multicast": "224.0.0.251", "unspecified": "0.0.0.0", "IPv6 loopback": "::1", "IPv6 link-local": "fe80::1",
    "IPv6 ULA": "fd00::1", "IPv4-mapped loopback": "::ffff:127.0.0.1", "IPv6 unspecified": "::",
}


@pytest.mark.parametrize("name", list(INTERNAL))
def test_every_internal_address_class_is_refused_before_connecting(recorder, name):
    """A name resolving to the address is refused, and nothing is fetched (the recorder sees nothing)."""
    port = recorder.server_port
    before = len(recorder.seen)
    with pytest.raises(APIError, match="public addresses") as error:
        fetch(f"http://media.example:{port}/file", resolver=lambda host, _port: [INTERNAL[name]])
    assert error.value.status == 400
    assert len(recorder.seen) == before
    assert address_class(INTERNAL[name]) is not None


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "0x7f000001", "2130706433", "127.1",
                                  "[::ffff:127.0.0.1]", "localhost."])
def test_loopback_spellings_resolve_and_are_refused(recorder, host):
    """Numeric and other spellings of loopback, resolved by the system as a client would."""
    before = len(recorder.seen)
    with pytest.raises(APIError, match="public addresses"):
        fetch(f"http://{host}:{recorder.server_port}/file")
    assert len(recorder.seen) == before


def test_a_name_with_any_internal_address_is_refused(recorder):
    before = len(recorder.seen)
    with pytest.raises(APIError, match="public addresses"):
        fetch(f"http://mixed.example:{recorder.server_port}/file", resolver=lambda h, p: ["8.8.8.8", "127.0.0.1"])
    assert len(recorder.seen) == before


def test_public_hosts_get_the_checked_address_with_their_own_name(public_host, treat_as_public):
    calls = []

    def resolver(host, port):
        calls.append(host)
        return ["::1"]

    assert fetch(f"http://cdn.example:{public_host.server_port}/file", resolver=resolver) == PAYLOAD
    assert calls == ["cdn.example"]
    assert public_host.seen[-1] == ("/file", f"cdn.example:{public_host.server_port}")


def test_a_redirect_to_an_internal_host_is_refused_at_that_hop(public_host, recorder, treat_as_public):
    """A public-looking URL that redirects to localhost: the hop is checked like the first URL, and refused with
    the one failure message; the internal host is never fetched."""
    target = f"http://localhost:{recorder.server_port}/file"
    before = len(recorder.seen)
    with pytest.raises(FetchFailed):
        fetch(f"http://cdn.example:{public_host.server_port}/hop?to={target}", resolver=lambda h, p: ["::1"]
              if h == "cdn.example" else fetch_module.resolve(h, p))
    assert len(recorder.seen) == before
    assert public_host.seen[-1][0].startswith("/hop")


def test_redirects_between_public_hosts_are_followed_within_the_bound(public_host, treat_as_public):
    url = f"http://cdn.example:{public_host.server_port}"
    assert fetch(f"{url}/hop?to={url}/file", resolver=lambda h, p: ["::1"]) == PAYLOAD
    with pytest.raises(FetchFailed):
        fetch(f"{url}/hop?to={url}/file", resolver=lambda h, p: ["::1"], max_redirects=0)


def test_dns_rebinding_cannot_switch_the_address(public_host, recorder, treat_as_public):
    """A name that answers a public address, then loopback: it is resolved once, and the connection goes to the
    address that was checked."""
    answers = iter([["::1"], ["127.0.0.1"], ["127.0.0.1"]])
    before, served = len(recorder.seen), len(public_host.seen)
    assert fetch(f"http://rebind.example:{public_host.server_port}/file",
                 resolver=lambda h, p: next(answers)) == PAYLOAD
    assert len(recorder.seen) == before and len(public_host.seen) == served + 1


def test_the_allow_list_and_the_switch(public_host, treat_as_public):
    port = public_host.server_port
    resolved = []

    def resolver(host, _port):
        resolved.append(host)
        return ["::1"]

    assert fetch(f"http://cdn.example:{port}/file", resolver, allowed_media_domains=["CDN.example"]) == PAYLOAD
    with pytest.raises(APIError, match="allowed-media-domains"):
        fetch(f"http://other.example:{port}/file", resolver, allowed_media_domains=["cdn.example"])
    assert resolved == ["cdn.example"]  # refused before resolving
    with pytest.raises(APIError, match="no-media-urls"):
        fetch(f"http://cdn.example:{port}/file", resolver, media_urls=False)


def test_internal_hosts_need_the_operators_opt_in(recorder):
    assert fetch(f"http://127.0.0.1:{recorder.server_port}/file", allow_internal_media_hosts=True) == PAYLOAD


def test_every_failure_after_connecting_reads_the_same(recorder):
    """A closed port, a 404 and a timeout give one message: the server is no port scanner."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    messages = []
    for url in (f"http://127.0.0.1:{closed}/file", f"http://127.0.0.1:{recorder.server_port}/missing",
                f"http://127.0.0.1:{recorder.server_port}/drip"):
        with pytest.raises(FetchFailed) as error:
            fetch(url, allow_internal_media_hosts=True, fetch_timeout_s=1.0)
        messages.append(error.value.message.replace(url, "URL"))
    assert len(set(messages)) == 1, messages


def test_the_deadline_bounds_the_whole_download_not_each_read(recorder):
    """A host dripping a byte every 0.2 s never trips a per-read timeout; the download is cut at --fetch-timeout."""
    start = time.monotonic()
    with pytest.raises(FetchFailed):
        fetch(f"http://127.0.0.1:{recorder.server_port}/drip", allow_internal_media_hosts=True, fetch_timeout_s=1.0)
    assert time.monotonic() - start < 10  # cut at 1 s; left alone the drip would take 200 s
