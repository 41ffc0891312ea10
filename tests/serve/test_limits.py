"""Requests over a limit are refused before the expensive work, in process: media count (vLLM's
--limit-mm-per-prompt), frames against the context before the vision tower, the context message an API client can
act on; settings checked at start-up; the temporary folders of killed servers swept."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import sys

import pytest
import torch
from PIL import Image

from llamavid.errors import UsageError
from llamavid.inference.encoder import MediaFeatures
from llamavid.inference.engine import ChatEngine
from llamavid.serve.app import prepare
from llamavid.serve.errors import APIError
from llamavid.serve.schemas import Turn, parse_chat_request
from llamavid.serve.server import Server
from llamavid.serve.settings import ServeSettings
from llamavid.serve.tempdir import OWNER, PREFIX, ServerTempDir
from llamavid.testing import tiny_model_and_processor


@pytest.fixture(scope="module")
def engine():
    model, processor = tiny_model_and_processor(seed=4)
    return ChatEngine(model, processor)


@pytest.fixture
def vision_calls(engine, monkeypatch):
    """How many times the vision tower ran."""
    calls = []
    real = engine.encoder.vision_features
    monkeypatch.setattr(engine.encoder, "vision_features", lambda pixels: calls.append(len(pixels)) or real(pixels))
    return calls


def make_server(engine, **settings) -> Server:
    return Server(engine, ServeSettings(web=False, **settings))


def png_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (20, 20), (200, 10, 10)).save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def request(count: int, kind: str = "image_url") -> dict:
    parts = [{"type": kind, kind: {"url": png_url()}} for _ in range(count)]
    return {"messages": [{"role": "user", "content": [*parts, {"type": "text", "text": "What is shown?"}]}]}


def run(server, body):
    return asyncio.run(prepare(server, parse_chat_request(body)))


def test_1200_images_are_refused_by_count_before_encoding(engine, vision_calls):
    server = make_server(engine)
    try:
        with pytest.raises(APIError, match=r"1200 images; this server takes at most 16 images.*limit-mm-per-prompt"):
            run(server, request(1200))
        assert vision_calls == []
    finally:
        server.close()


def test_frames_that_cannot_fit_are_refused_before_the_vision_tower(engine, vision_calls):
    """Within the count limit, 1,200 one-frame media fill the tiny model's 2048-token context (2 tokens a frame):
    refused from their number before anything is decoded; decoded frames are checked the same way."""
    server = make_server(engine, limit_mm_per_prompt='{"image": 5000}')
    try:
        with pytest.raises(APIError, match="need at least 2400"):
            run(server, request(1200))
        assert vision_calls == []
        server.check_frames(900)
        with pytest.raises(APIError, match="1100 frames"):
            server.check_frames(1100)
    finally:
        server.close()


def test_a_few_images_still_go_through(engine, vision_calls):
    server = make_server(engine)
    try:
        sample, hits = run(server, request(3))
        assert len(sample.media) == 3 and hits == 2  # the same image thrice: encoded once
        assert vision_calls == [1]
    finally:
        server.close()


def test_the_context_message_names_what_a_client_can_change(engine):
    server = make_server(engine)
    try:
        width, patches = engine.config.vision_config.hidden_size, engine.config.num_patches
        video = MediaFeatures(torch.randn(1100, patches + 1, width), "video", timestamps=[0.0] * 1100)
        with pytest.raises(APIError) as error:
            server.sample([Turn("user", "What happens?", [video])])
        message = error.value.message
        assert "max_frames" in message and "video_url" in message and "--max-frames" not in message
        image = MediaFeatures(torch.randn(1, patches + 1, width), "image", timestamps=[0.0])
        with pytest.raises(APIError) as error:  # no room for even one frame: max_frames cannot help
            server.sample([Turn("user", "word " * 2100, [image])])
        assert "fewer images or videos" in error.value.message and "max_frames" not in error.value.message
    finally:
        server.close()


@pytest.mark.parametrize("value", ['{"image": -1}', '{"audio": 2}', "16", "{bad json"])
def test_bad_media_limits_are_refused_at_start(value):
    with pytest.raises(UsageError, match="limit-mm-per-prompt"):
        ServeSettings(limit_mm_per_prompt=value)


def test_loopback_servers_answer_loopback_names_only():
    assert ServeSettings(bind_host="127.0.0.1").answered_hosts == ["localhost", "127.0.0.1", "[::1]"]
    assert ServeSettings(bind_host="::1").answered_hosts is not None
    assert ServeSettings(bind_host="0.0.0.0").answered_hosts is None
    assert ServeSettings(bind_host="0.0.0.0", allowed_hosts=["LLM.example.org", "::1"]).answered_hosts == [
        "llm.example.org", "[::1]"]


def test_a_killed_servers_temporary_folder_is_swept_on_the_next_start(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = tmp_path / f"{PREFIX}killed"
    left.mkdir()
    (left / OWNER).write_text(str(dead.pid))
    (left / "upload.mp4").write_bytes(b"x" * 1000)
    alive = tmp_path / f"{PREFIX}running"
    alive.mkdir()
    (alive / OWNER).write_text(str(os.getppid()))
    unknown = tmp_path / f"{PREFIX}unowned"
    unknown.mkdir()
    folder = ServerTempDir(tmp_path)
    assert not left.exists() and alive.exists() and unknown.exists()
    assert folder.path.exists() and (folder.path / OWNER).read_text() == str(os.getpid())
    folder.remove()
    assert not folder.path.exists()
