"""What the web page lets a caller of its routes (Gradio's API, no browser needed) reach, on a real server with an
API key: nothing without the key, only files uploaded through it (or the bundled sample) with it, and one message
for any other path whether or not it exists."""

from __future__ import annotations

import json

import httpx
import pytest

from llamavid.testing import ServerProcess

KEY = "page-key"


@pytest.fixture(scope="module")
def server(served_files, tmp_path_factory):
    log = tmp_path_factory.mktemp("web-access-log") / "server.log"
    with ServerProcess(["--model", str(served_files / "model"), "--api-key", KEY], log=log) as process:
        yield process


def call(client: httpx.Client, name: str, data: list) -> tuple[str, object]:
    """(event, data) of a Gradio API call: "complete" with the outputs, or "error" with the message."""
    started = client.post(f"/gradio_api/call/{name}", json={"data": data})
    assert started.status_code == 200, started.text
    answer = client.get(f"/gradio_api/call/{name}/{started.json()['event_id']}").text
    events = [line.split(": ", 1)[1] for line in answer.splitlines() if line.startswith("event: ")]
    payloads = [line.split(": ", 1)[1] for line in answer.splitlines() if line.startswith("data: ")]
    return events[-1], json.loads(payloads[-1])


def file_data(path) -> dict:
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def test_without_the_key_the_page_answers_nothing(server, served_files):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        upload = client.post("/gradio_api/upload", files={"files": ("a.mp4", b"not much")})
        assert upload.status_code == 401
        assert client.post("/gradio_api/call/ask", json={"data": ["hi", [], None, 0, 1, 8]}).status_code == 401
        assert client.post("/gradio_api/call/use_video",
                           json={"data": [file_data(served_files / "media/clip.mp4")]}).status_code == 401
        wrong = client.post("/login", data={"username": "me", "password": "wrong"})
        assert wrong.status_code >= 400


@pytest.fixture(scope="module")
def logged_in(server):
    with httpx.Client(base_url=server.url, timeout=120) as client:
        assert client.post("/login", data={"username": "anyone", "password": KEY}).status_code == 200
        yield client


def test_the_page_reads_no_file_it_was_not_sent(logged_in, served_files):
    """A clip that exists outside every upload, a system file and a missing path: the same refusal for each (the
    path aside), and nothing decoded."""
    messages = []
    for path in (served_files / "media/clip.mp4", "/etc/hostname", "/no/such/folder/clip.mp4"):
        for handler in ("use_video", "use_image", "use_features"):
            event, message = call(logged_in, handler, [file_data(path)])
            assert event == "error", (handler, path, message)
            messages.append(message["error"].replace(str(path), "PATH"))
    assert len(set(messages)) == 1, messages


def test_uploads_and_the_sample_are_read(logged_in, served_files):
    clip = (served_files / "media/clip.mp4").read_bytes()
    uploaded = logged_in.post("/gradio_api/upload", files={"files": ("clip.mp4", clip)})
    assert uploaded.status_code == 200
    event, outputs = call(logged_in, "use_video", [file_data(uploaded.json()[0])])
    assert event == "complete" and "Talking about clip.mp4" in outputs[2]
    event, outputs = call(logged_in, "use_sample", [])
    assert event == "complete" and "Talking about" in outputs[2]
