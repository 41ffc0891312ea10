"""The API against a real `llamavid serve` subprocess on a loopback port, through the `openai` client and raw
HTTP: text, image and video requests, streaming, every client error (and the server still answering after it),
local-path safety, caching, batching of concurrent requests, and clients that go away."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from llamavid.model.processing import LlamaVidProcessor
from llamavid.testing import ServerProcess

KEY = "test-key"
MODEL = "tiny"


@pytest.fixture(scope="module")
def server(served_files, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve-log") / "server.log"
    args = ["--model", str(served_files / "model"), "--served-model-name", MODEL, "--no-web",
            "--allowed-local-media-path", str(served_files / "media"), "--api-key", KEY,
            "--max-body-mb", "1", "--max-frames", "8", "--batch-wait-ms", "50", "--fetch-timeout", "5"]
    with ServerProcess(args, log=log) as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as session:
        yield session


@pytest.fixture(scope="module")
def processor(served_files):
    return LlamaVidProcessor.from_pretrained(served_files / "model")


def data_url(path, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def ask(client, content, **options):
    options = {"temperature": 0, "max_tokens": 8, **options}
    return client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}], **options)


def expected_prompt_tokens(processor, text: str, placeholders: list[tuple[str, int]]) -> int:
    lines = [kind for kind, _ in placeholders]
    prompt = processor.render_chat([("user", "\n".join([*lines, text]))])
    return len(processor.tokenize(prompt, [frames for _, frames in placeholders]))


def test_health_and_models(server, http):
    assert httpx.get(f"{server.url}/health").status_code == 200
    models = http.get("/v1/models").json()
    assert [m["id"] for m in models["data"]] == [MODEL]


def test_text_only(client, processor):
    answer = ask(client, "Is there a cat?")
    choice = answer.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert answer.usage.prompt_tokens == expected_prompt_tokens(processor, "Is there a cat?", [])
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_image_data_url_counts_visual_tokens(client, served_files, processor):
    answer = ask(client, [{"type": "image_url", "image_url": {"url": data_url(served_files / "media/green.png", "image/png")}},
                          {"type": "text", "text": "What colour is it?"}])
    assert answer.usage.prompt_tokens == expected_prompt_tokens(processor, "What colour is it?", [("<image>", 1)])


def test_video_per_request_sampling(client, served_files, processor):
    """vLLM's media_io_kwargs num_frames and SGLang's fps/max_frames in video_url both decide the frames."""
    url = f"file://{served_files}/media/clip.mp4"
    video = [{"type": "video_url", "video_url": {"url": url}}, {"type": "text", "text": "Describe the video."}]
    three = ask(client, video, extra_body={"media_io_kwargs": {"video": {"num_frames": 3}}})
    assert three.usage.prompt_tokens == expected_prompt_tokens(processor, "Describe the video.", [("<video>", 3)])
    capped = [{"type": "video_url", "video_url": {"url": url, "fps": 2, "max_frames": 5}}, video[1]]
    five = ask(client, capped)
    assert five.usage.prompt_tokens == expected_prompt_tokens(processor, "Describe the video.", [("<video>", 5)])


def test_several_media_and_history(client, served_files, processor):
    media = served_files / "media"
    content = [
        {"type": "image_url", "image_url": {"url": data_url(media / "green.png", "image/png")}},
        {"type": "video_url", "video_url": {"url": data_url(media / "other.mp4", "video/mp4")}},
        {"type": "text", "text": "Compare them."},
    ]
    first = ask(client, content)
    assert first.usage.prompt_tokens == expected_prompt_tokens(processor, "Compare them.", [("<image>", 1), ("<video>", 3)])
    messages = [{"role": "user", "content": content},
                {"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "And now?"}]
    follow = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=4)
    # the follow-up shows both media again, with its own question (training layout)
    assert follow.usage.prompt_tokens > first.usage.prompt_tokens + 2 * 4


def test_stream_raw_sse_lines(http):
    body = {"model": MODEL, "temperature": 0, "max_tokens": 10, "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "Hello there"}]}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[0]["object"] == "chat.completion.chunk"
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finish) == 1 and finish[0]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] >= 1
    streamed = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    whole = http.post("/v1/chat/completions", json={**body, "stream": False}).json()
    assert streamed == whole["choices"][0]["message"]["content"]


def test_stop_strings_cut_the_answer(client):
    full = ask(client, "Describe the video in detail.", max_tokens=24).choices[0].message.content
    if len(full.strip()) < 6:
        pytest.skip("the random model answered too briefly to place a stop string")
    stop = full[4:6]
    cut = ask(client, "Describe the video in detail.", max_tokens=24, stop=[stop])
    assert cut.choices[0].message.content == full[: full.find(stop)]
    assert cut.choices[0].finish_reason == "stop"


def test_seed_makes_sampling_repeatable(client):
    first = ask(client, "Is there a cat?", temperature=1.0, seed=11, max_tokens=12).choices[0].message.content
    again = ask(client, "Is there a cat?", temperature=1.0, seed=11, max_tokens=12).choices[0].message.content
    assert first == again


def _part(kind, url):
    return [{"type": kind, kind: {"url": url}}, {"type": "text", "text": "What is it?"}]


def _chat_body(content):
    return {"model": MODEL, "max_tokens": 2, "messages": [{"role": "user", "content": content}]}


ERRORS = {
    "malformed JSON": (b"{not json", 400, "not valid JSON"),
    "not a chat request": ({"prompt": "hello"}, 400, "messages"),
    "empty messages": ({"messages": []}, 400, "messages"),
    "unknown model": ({**_chat_body("hi"), "model": "gpt-9"}, 404, "does not exist"),
    "unknown part type": (_chat_body([{"type": "audio_url", "audio_url": {"url": "x"}}]), 400, "unknown content part"),
    "image of random bytes": (_chat_body(_part("image_url", "data:image/png;base64,"
                                               + base64.b64encode(bytes(range(256)) * 8).decode())),
                              400, "could not be decoded"),
    "video of random bytes": (_chat_body(_part("video_url", "data:video/mp4;base64,"
                                               + base64.b64encode(bytes(range(256)) * 8).decode())),
                              400, "could not be decoded"),
    "broken base64": (_chat_body(_part("image_url", "data:image/png;base64,abc$%^")), 400, "not valid base64"),
    "etc passwd": (_chat_body(_part("image_url", "file:///etc/passwd")), 400, "outside the allowed"),
    "ftp scheme": (_chat_body(_part("image_url", "ftp://example.com/a.png")), 400, "scheme"),
    "prompt too long": (_chat_body("word " * 3000), 400, "maximum context length"),
    "n above 1": ({**_chat_body("hi"), "n": 2}, 400, "n"),
    "temperature out of range": ({**_chat_body("hi"), "temperature": -1}, 400, "temperature"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_client_errors_are_json_and_the_server_carries_on(http, name):
    body, status, words = ERRORS[name]
    if isinstance(body, bytes):
        response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    else:
        response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"message", "type", "code"} and error["code"] == status
    assert words in error["message"] and "\n" not in error["message"]
    assert http.post("/v1/chat/completions", json=_chat_body("still there?")).status_code == 200


def test_dot_dot_paths_stay_in_the_allowed_folder(http, served_files):
    for url in (f"{served_files}/media/../secret.txt", f"file://{served_files}/media/../secret.txt",
                "../secret.txt", "media/green.png"):
        response = http.post("/v1/chat/completions", json=_chat_body(_part("image_url", url)))
        assert response.status_code == 400, url
        assert "allowed" in response.json()["error"]["message"]


def test_bodies_over_the_limit_get_413_declared_or_chunked(http):
    big = json.dumps(_chat_body("x" * (2 << 20))).encode()
    assert http.post("/v1/chat/completions", content=big).status_code == 413

    def chunks():  # no Content-Length: the server must count while reading
        for start in range(0, len(big), 64 << 10):
            yield big[start : start + (64 << 10)]

    response = http.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413
    assert response.json()["error"]["code"] == 413
    assert http.post("/v1/chat/completions", json=_chat_body("after")).status_code == 200


def test_api_key_is_required(server):
    response = httpx.post(f"{server.url}/v1/chat/completions", json=_chat_body("hi"))
    assert response.status_code == 401 and response.json()["error"]["type"] == "AuthenticationError"
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        ask(wrong, "hi")


class _Media(BaseHTTPRequestHandler):
    """Loopback media host: /green.png, a redirect to it, and a redirect to file:///etc/passwd; records the paths
    asked for."""

    png = b""
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (the stdlib's name)
        self.seen.append(self.path)
        if self.path == "/green.png":
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.png)))
            self.end_headers()
            self.wfile.write(self.png)
        elif self.path == "/hop":
            self.send_response(302)
            self.send_header("Location", "/green.png")
            self.end_headers()
        elif self.path == "/to-file":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def media_host(served_files):
    _Media.png = (served_files / "media/green.png").read_bytes()
    host = ThreadingHTTPServer(("127.0.0.1", 0), _Media)
    thread = threading.Thread(target=host.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{host.server_port}"
    host.shutdown()


def test_media_urls_on_internal_hosts_are_refused_unfetched(http, media_host):
    """By default the server fetches only from public addresses: a loopback media host, by any name, is never
    asked for anything (redirects and their checks: tests/serve/test_fetch.py)."""
    port = media_host.rsplit(":", 1)[1]
    for url in (f"{media_host}/green.png", f"http://localhost:{port}/hop", f"http://[::1]:{port}/green.png",
                f"http://0x7f000001:{port}/green.png"):
        refused = http.post("/v1/chat/completions", json=_chat_body(_part("image_url", url)))
        assert refused.status_code == 400 and "public addresses" in refused.json()["error"]["message"], url
    assert _Media.seen == []


def _log_lines(server, marker: str) -> list[str]:
    return [line for line in server.log().splitlines() if marker in line]


def test_same_video_twice_reuses_its_features(client, server, served_files):
    url = data_url(served_files / "media/clip.mp4", "video/mp4")
    for question in ("First look.", "Second look."):
        ask(client, [{"type": "video_url", "video_url": {"url": url, "max_frames": 2}},
                     {"type": "text", "text": question}], max_tokens=2)
    lines = _log_lines(server, "frames=2 ")
    assert lines[-2].split("cached=")[1][0] == "0" and lines[-1].split("cached=")[1][0] == "1"


def test_concurrent_requests_each_get_their_own_answer(client, server, served_files):
    """Different prompts (text, image, video) sent at once are batched, and each answer equals the answer to the
    same request made alone (greedy)."""
    media = served_files / "media"
    requests = [f"Question number {i}: what happens?" for i in range(6)]
    requests += [[{"type": "video_url", "video_url": {"url": f"file://{media}/clip.mp4", "max_frames": 4}},
                  {"type": "text", "text": f"Describe frame {i}."}] for i in range(3)]
    requests += [[{"type": "image_url", "image_url": {"url": f"file://{media}/green.png"}},
                  {"type": "text", "text": "What colour?"}]]
    alone = [ask(client, content, max_tokens=12).choices[0].message.content for content in requests]
    with ThreadPoolExecutor(len(requests)) as pool:
        together = list(pool.map(lambda c: ask(client, c, max_tokens=12).choices[0].message.content, requests))
    assert together == alone
    batches = [int(line.split("batch=")[1].split()[0]) for line in _log_lines(server, "batch=")]
    assert max(batches[-len(requests):]) > 1


def test_a_client_that_goes_away_stops_its_generation(server, http):
    body = {**_chat_body("Tell me a long story."), "max_tokens": 1500, "stream": True, "temperature": 0}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        for count, _ in enumerate(response.iter_lines()):
            if count >= 4:
                break
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _log_lines(server, "status=499"):
        time.sleep(0.2)
    line = _log_lines(server, "status=499")[-1]
    assert "finish=cancelled" in line
    assert int(line.split("completion_tokens=")[1].split()[0]) < 1500
