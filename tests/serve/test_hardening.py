"""A `llamavid serve` process probed as a careless client or an attacker would, on loopback only: cross-site posts,
rebound Host names, CORS, slow media hosts that must not starve other requests, clients that go away, requests
over a limit refused before the expensive work (media count and frames before fetching, text before tokenizing,
decoded frames before decoding), and client mistakes that must be 4xx."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from llamavid.testing import ServerProcess, drip, save_model_folder, static_clip, tiny_model_and_processor

APP_ORIGIN = "http://app.example"


class _Host(BaseHTTPRequestHandler):
    """A loopback media host: /drip sends a byte every 0.3 s, anything else 404; records every path."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.server.seen.append(self.path)
        if self.path.startswith("/drip"):
            drip(self)
            return
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def media_host():
    class Server(ThreadingHTTPServer):
        daemon_threads = True

    host = Server(("127.0.0.1", 0), _Host)
    host.seen = []
    threading.Thread(target=host.serve_forever, daemon=True).start()
    yield host
    host.shutdown()


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """6,000 frames (200 s at 30 fps) of a still picture: a few KB to store, every frame to decode."""
    return static_clip(tmp_path_factory.mktemp("long") / "long.mp4")


@pytest.fixture(scope="module")
def server(served_files, long_clip, tmp_path_factory):
    log = tmp_path_factory.mktemp("hardening-log") / "server.log"
    args = ["--model", str(served_files / "model"), "--served-model-name", "tiny", "--no-web",
            "--allowed-local-media-path", str(served_files / "media"),
            "--allowed-local-media-path", str(long_clip.parent), "--allow-internal-media-hosts",
            "--fetch-timeout", "3", "--limit-mm-per-prompt", '{"image": 2000}', "--max-decoded-frames", "1000",
            "--allowed-origins", APP_ORIGIN, "--max-prompt-chars", "100000"]
    with ServerProcess(args, log=log) as process:
        yield process


def chat(text_or_parts, **extra) -> dict:
    return {"messages": [{"role": "user", "content": text_or_parts}], "max_tokens": 4, "temperature": 0, **extra}


def image(url: str) -> dict:
    return {"type": "image_url", "image_url": {"url": url}}


def log_lines_once(server, text: str, after: int = 0, seconds: float = 30) -> list[str]:
    """The server's log lines past the first `after`, once one of them holds `text` (or `seconds` on, if none
    does): a request's line is written when the server is done with it, which may be after its client left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not any(text in line for line in server.log().splitlines()[after:]):
        time.sleep(0.2)
    return server.log().splitlines()[after:]


_CLIENT = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=100))  # one TLS setup, shared by threads


@pytest.fixture(scope="module", autouse=True)
def _close_client():
    yield
    _CLIENT.close()


def post(server, body, **options) -> httpx.Response:
    return _CLIENT.post(f"{server.url}/v1/chat/completions", json=body, **options)


def test_a_cross_site_text_plain_post_is_refused_unfetched(server, media_host):
    """What a page on another site can send without a CORS preflight: refused before anything runs."""
    before = len(media_host.seen)
    body = json.dumps(chat([image(f"http://127.0.0.1:{media_host.server_address[1]}/secret.png")]))
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=60,
                          headers={"content-type": "text/plain", "origin": "http://evil.example"})
    assert response.status_code == 415 and "application/json" in response.json()["error"]["message"]
    assert len(media_host.seen) == before
    assert "access-control-allow-origin" not in response.headers


def test_only_loopback_host_names_are_answered_on_loopback(server):
    """DNS rebinding: a page on evil.example whose name now points at 127.0.0.1 sends Host: evil.example."""
    port = server.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "10.0.0.1"):
        assert httpx.get(f"{server.url}/health", headers={"host": host}).status_code == 400, host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert httpx.get(f"{server.url}/health", headers={"host": host}).status_code == 200, host


def test_cors_answers_only_the_allowed_origins(server):
    def preflight(origin):
        return httpx.options(f"{server.url}/v1/chat/completions", headers={
            "origin": origin, "access-control-request-method": "POST",
            "access-control-request-headers": "content-type"})

    assert preflight(APP_ORIGIN).headers.get("access-control-allow-origin") == APP_ORIGIN
    assert "access-control-allow-origin" not in preflight("http://evil.example").headers


def test_slow_media_hosts_do_not_starve_other_requests(server, media_host):
    """40 requests whose media drip in (more than Starlette's 40 worker threads held) while a text-only request
    is answered at once; each drip is cut at --fetch-timeout, whatever its pace."""
    drip = f"http://127.0.0.1:{media_host.server_address[1]}/drip"
    with ThreadPoolExecutor(40) as pool:
        started = time.monotonic()
        slow = [pool.submit(lambda i=i: (post(server, chat([image(f"{drip}?{i}"), {"type": "text",
                                                                                     "text": "?"}])),
                                         time.monotonic() - started)) for i in range(40)]
        time.sleep(1.0)
        assert post(server, chat("Quick question?")).status_code == 200
        answered = time.monotonic() - started
        results = [future.result() for future in slow]
    # starved, the text request would wait for the drips to be cut; an order, not a time, so a loaded machine
    # cannot fail it
    assert answered < min(seconds for _, seconds in results)
    for response, seconds in results:
        assert response.status_code == 400 and "could not fetch" in response.json()["error"]["message"]
        # each drip (1,000 bytes at 0.3 s: 300 s left alone) is cut at the 3 s deadline, waiting for a fetch slot
        # included; the rest is slack for a loaded machine
        assert seconds < 3.0 + 20.0


LONG_CONTEXT = 16384


@pytest.fixture(scope="module")
def long_answers(tmp_path_factory):
    """A server whose model holds 16K tokens: one answer to its budget runs for a minute or more, so a client that
    leaves after half a second leaves nearly all of it to generate, even where the machine holds the server up for
    seconds (in full-suite runs the server has seen a disconnect seconds late, and a 2K answer was over first)."""
    root = tmp_path_factory.mktemp("long-answers")
    model, processor = tiny_model_and_processor(
        seed=3, max_sequence_length=LONG_CONTEXT, text_overrides={"max_position_embeddings": LONG_CONTEXT})
    save_model_folder(model, processor, root / "model")
    with ServerProcess(["--model", str(root / "model"), "--served-model-name", "tiny", "--no-web"],
                       log=root / "server.log") as process:
        yield process


def test_a_non_streaming_client_that_goes_away_stops_its_generation(long_answers):
    """The answer runs to its budget whatever this CPU's greedy path is (`ignore_eos`); the client gives up half a
    second in, with nearly all of it still to generate."""
    budget = LONG_CONTEXT - 400
    request = chat("Tell me a long story.", max_tokens=budget, ignore_eos=True)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{long_answers.url}/v1/chat/completions", json=request, timeout=httpx.Timeout(60, read=0.5))
    # its one log line comes once the server has noticed (or, were it not to notice, once the answer is whole)
    line = next((line for line in log_lines_once(long_answers, "status=", seconds=300) if "status=" in line), "")
    assert "status=499" in line, long_answers.log()[-4000:]
    if "completion_tokens=" in line:  # else the server reached the request only after the client had gone
        assert "finish=cancelled" in line and int(line.split("completion_tokens=")[1].split()[0]) < budget, line
    assert "Traceback" not in long_answers.log()


def test_a_client_gone_before_its_body_is_whole_is_a_499_line(server):
    before = len(server.log().splitlines())
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as client:
        client.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"messages\": [")
        time.sleep(0.5)
    new_lines = log_lines_once(server, "status=499", after=before)
    assert any("status=499" in line and "while sending" in line for line in new_lines), "\n".join(new_lines)
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("seed", [1 << 70, -(1 << 70)])
def test_seeds_outside_torchs_range_are_a_400(server, seed):
    response = post(server, chat("hi", seed=seed))
    assert response.status_code == 400 and "seed" in response.json()["error"]["message"]


def test_json_nested_too_deeply_is_a_400(server):
    body = b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = httpx.post(f"{server.url}/v1/chat/completions", content=body, timeout=60,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and "nested" in response.json()["error"]["message"]


def test_1200_images_are_refused_before_any_is_fetched(server, media_host):
    """1,200 one-frame media need more tokens than the context holds: refused from the count, nothing fetched."""
    before = len(media_host.seen)
    url = f"http://127.0.0.1:{media_host.server_address[1]}/img"
    started = time.monotonic()
    response = post(server, chat([image(f"{url}{i}.png") for i in range(1200)] + [{"type": "text", "text": "?"}]))
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "2048" in message and "1200 frames" in message and "fewer images" in message
    assert len(media_host.seen) == before
    assert time.monotonic() - started < 5


def test_text_over_the_limit_is_refused_before_tokenizing(server):
    started = time.monotonic()
    response = post(server, chat("word " * 40_000))
    assert response.status_code == 400
    assert "at most 100000" in response.json()["error"]["message"]
    assert "--max-prompt-chars" in response.json()["error"]["message"]
    assert time.monotonic() - started < 5


def test_a_6000_frame_clip_is_refused_before_decoding(server, long_clip):
    started = time.monotonic()
    part = {"type": "video_url", "video_url": {"url": f"file://{long_clip}"}}
    response = post(server, chat([part, {"type": "text", "text": "?"}]))
    assert response.status_code == 413, response.text
    message = response.json()["error"]["message"]
    assert "6000 frames" in message and "1000" in message
    assert time.monotonic() - started < 2


def test_the_context_message_names_what_a_client_can_change(server):
    response = post(server, chat("word " * 3000))
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and "maximum context length" in message
    assert "--max-frames" not in message
