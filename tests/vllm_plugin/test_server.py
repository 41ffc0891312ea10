"""vLLM's OpenAI-compatible server answers LLaMA-VID chat requests with `video_url` and `image_url` data URLs,
through the `openai` client, with our model's tokens and log-probabilities. The server process finds the plugin
through its entry point, decodes the video with the plugin's loader (our 1 fps rule, chosen by the exported
folder) and renders the exported Jinja chat template."""

from __future__ import annotations

import base64
import io
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("vllm")
openai = pytest.importorskip("openai")

from vllm_case import MAX_NEW_TOKENS, build_model, reference  # noqa: E402

from llamavid.media.video import load_video  # noqa: E402
from llamavid.testing import ServerProcess, write_test_video  # noqa: E402

QUESTION = "What colour is the square?"
STARTUP_S = 400
VLLM_SERVER = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vllm-server")
    model, processor, folder = build_model(directory)
    args = [
        "--model", str(folder), "--dtype", "float32", "--max-model-len", "512", "--enforce-eager",
        "--limit-mm-per-prompt", '{"image": 1, "video": 1}',
    ]
    # nothing registers the plugin here: the server process finds it through its entry point
    with ServerProcess(
        args, log=directory / "server.log", startup_timeout_s=STARTUP_S, program=VLLM_SERVER,
        env={"VLLM_CPU_KVCACHE_SPACE": "1"},
    ) as process:
        yield model, processor, str(folder), openai.OpenAI(base_url=f"{process.url}/v1", api_key="none"), directory

def chat(client, folder, part: tuple = (), history=()):
    response = client.chat.completions.create(
        model=folder,
        messages=[*history, {"role": "user", "content": [*part, {"type": "text", "text": QUESTION}]}],
        max_tokens=MAX_NEW_TOKENS,
        temperature=0,
        logprobs=True,
        extra_body={"ignore_eos": True, "return_token_ids": True},
    )
    choice = response.choices[0]
    return choice.model_extra["token_ids"], [step.logprob for step in choice.logprobs.content]


def data_url(kind: str, payload: bytes) -> str:
    return f"data:{kind};base64," + base64.b64encode(payload).decode()


def test_video_url(server):
    model, processor, folder, client, directory = server
    path = write_test_video(directory / "clip.mp4", seconds=3)
    frames = load_video(path, fps=1.0, max_frames=32).frames
    assert len(frames) == 3  # our rule: 1 fps, not vLLM's 32 evenly spaced frames
    got = chat(client, folder, ({"type": "video_url", "video_url": {"url": data_url("video/mp4", path.read_bytes())}},))
    want = reference(model, processor, [("user", f"<video>\n{QUESTION}")], [frames], [QUESTION])
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], atol=1e-4)


def test_image_url(server):
    model, processor, folder, client, _ = server
    picture = Image.fromarray(np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8))
    encoded = io.BytesIO()
    picture.save(encoded, format="PNG")
    got = chat(client, folder, ({"type": "image_url", "image_url": {"url": data_url("image/png", encoded.getvalue())}},))
    want = reference(model, processor, [("user", f"<image>\n{QUESTION}")], [picture], [QUESTION])
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], atol=1e-4)


def test_a_follow_up_question_sees_the_video_again(server):
    """The client sends the video once; the second turn is answered as our engine lays it out (the video
    shown again with the second question)."""
    model, processor, folder, client, directory = server
    path = write_test_video(directory / "clip2.mp4", seconds=2)
    frames = load_video(path, fps=1.0).frames
    video = {"type": "video_url", "video_url": {"url": data_url("video/mp4", path.read_bytes())}}
    first = "Describe the video."
    history = [
        {"role": "user", "content": [video, {"type": "text", "text": first}]},
        {"role": "assistant", "content": "A bar."},
    ]
    got = chat(client, folder, history=history)
    shown = [("user", f"<video>\n{first}"), ("assistant", "A bar."), ("user", f"<video>\n{QUESTION}")]
    want = reference(model, processor, shown, [frames], [first, QUESTION])
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], atol=1e-4)
