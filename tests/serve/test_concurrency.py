"""One owner of generation per process: movie questions from the web page and API requests arriving at the same
time against one server all get their one-at-a-time greedy answers.

The model is the demo's format (visual weights and a LoRA adapter over a base LLM, the adapter on visual turns
only), whose adapter choice is per-generation state: two generations running at once on it would mix up their
adapters. The server runs batches of one, so that a difference could only come from generations overlapping
(batched rows may differ from lone ones by float rounding: a row's place in a batch changes the matrix tiling).
"""

from __future__ import annotations

import threading

import pytest
import torch

from llamavid.inference.adapter_folder import save_adapter_model
from llamavid.inference.feature_files import FeatureFile, write_feature_file
from llamavid.testing import ServerProcess, save_llm_folder, tiny_model_and_processor

peft = pytest.importorskip("peft")
httpx = pytest.importorskip("httpx")
gradio_client = pytest.importorskip("gradio_client")

PROMPTS = ("Hello there", "What is the capital of France?", "Name a colour.", "Tell me a story.")
QUESTIONS = ("Who leaves?", "What happens first?")
TOKENS = 24


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("concurrency")
    model, processor = tiny_model_and_processor(seed=3)
    save_llm_folder(model, processor, root / "base-llm")
    model.config.base_llm, model.config.llm_adapter_visual_only = str(root / "base-llm"), True
    lora = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model.language_model = peft.get_peft_model(model.language_model, lora)
    save_adapter_model(model, processor, root / "model")
    frames, width = 300, model.config.vision_config.hidden_size
    features = torch.randn(frames, 1 + model.config.num_patches, width, generator=torch.Generator().manual_seed(0))
    subtitles = [["A line."] if i % 10 == 0 else [] for i in range(frames)]
    write_feature_file(root / "movie.safetensors", FeatureFile(features.half(), list(map(float, range(frames))),
                                                               subtitles, True, {}))
    with ServerProcess(["--model", str(root / "model"), "--max-batch-size", "1"], log=root / "server.log") as running:
        running.movie = root / "movie.safetensors"
        yield running


def api_answer(server, prompt: str) -> str:
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": TOKENS, "temperature": 0}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=120)
    response.raise_for_status()
    return response.json()["choices"][0]["message"]["content"]


def movie_page(server):
    """A browser session of the web page with the movie's feature file picked."""
    page = gradio_client.Client(server.url, verbose=False)
    page.predict(gradio_client.handle_file(str(server.movie)), api_name="/use_features")
    return page


def movie_answer(page, question: str) -> str:
    history, _ = page.predict(question, [], 0.0, 1.0, TOKENS, api_name="/ask")
    content = history[-1]["content"]
    return content if isinstance(content, str) else "".join(part["text"] for part in content)


def _ask(start: threading.Barrier, answers: list, key, answer, target, text: str) -> None:
    start.wait()  # every request leaves at once
    answers.append((key, answer(target, text)))


def test_web_movie_questions_and_api_requests_at_once_get_their_lone_answers(server):
    alone = {}
    for question in QUESTIONS:
        page = movie_page(server)
        alone["movie", question] = movie_answer(page, question)
        page.close()
    alone.update({("api", p): api_answer(server, p) for p in PROMPTS})
    assert len(set(alone.values())) > 1, "the answers must tell the requests apart"
    for _ in range(3):
        pages = {q: movie_page(server) for q in QUESTIONS}
        jobs = [(("movie", q), movie_answer, pages[q], q) for q in QUESTIONS]
        jobs += [(("api", p), api_answer, server, p) for p in PROMPTS for _ in range(2)]
        start, answers = threading.Barrier(len(jobs)), []
        threads = [threading.Thread(target=_ask, args=(start, answers, *job)) for job in jobs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert len(answers) == len(jobs)
        for page in pages.values():
            page.close()
        wrong = [key for key, text in answers if text != alone[key]]
        assert not wrong, f"answers changed by requests running at the same time: {wrong}"
