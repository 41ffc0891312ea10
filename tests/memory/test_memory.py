"""Bounded memory per stage (chunked token generation, chunked prefill), the quantized KV cache, and the memory plan
that refuses what cannot fit before anything is loaded."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from llamavid.cli import main
from llamavid.inference import memory_plan
from llamavid.inference.engine import ChatEngine
from llamavid.inference.feature_files import FeatureFile, write_feature_file
from llamavid.inference.generation import GenerationSettings
from llamavid.inference.inputs import Turn, build_sample, collate
from llamavid.inference.kv_cache import bytes_per_element, kv_cache_bits
from llamavid.testing import tiny_model_and_processor

HERE = Path(__file__).parent
QUESTION = "what happens at the end of the movie"


@pytest.fixture(scope="module")
def model_and_processor():
    return tiny_model_and_processor(seed=3)


def _movie(config, frames: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    shape = (frames, 1 + config.num_patches, config.vision_config.hidden_size)
    return torch.randn(shape, generator=generator).to(torch.float16)


def test_token_generation_in_frame_chunks_equals_one_pass(model_and_processor):
    model, processor = model_and_processor
    features = _movie(model.config, 11)  # float16 as stored: each chunk is cast on its own
    ids, mask = processor.tokenize_qformer(["first question", "a second, longer question about it"])
    counts = torch.tensor([4, 7])
    segments = torch.tensor([0, 1, 1])  # the second medium shown twice: frames shared by two prompts
    ids = ids[torch.tensor([0, 1, 0])]
    mask = mask[torch.tensor([0, 1, 0])]
    outputs = []
    for chunk in (3, 1000):
        model.config.qformer_chunk_size = chunk
        with torch.inference_mode():
            outputs.append(model.get_visual_tokens(features, ids, mask, counts, segments))
    model.config.qformer_chunk_size = 256
    assert outputs[0].shape == (18 * model.config.tokens_per_frame, model.config.text_config.hidden_size)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    one_pass = model.get_visual_tokens(features.float(), ids, mask, counts, segments)
    torch.testing.assert_close(outputs[0], one_pass.detach(), rtol=1e-5, atol=1e-5)


def test_collate_keeps_the_stored_dtype_of_a_movie(model_and_processor):
    model, processor = model_and_processor
    engine = ChatEngine(model, processor)
    from llamavid.inference.encoder import MediaFeatures

    movie = MediaFeatures(_movie(model.config, 5), "movie", subtitles=[["hi"]] * 5)
    sample = build_sample(processor, [Turn("user", QUESTION, [movie])])
    inputs = collate(processor, [sample], engine.device)
    assert inputs["vision_features"].dtype == torch.float16
    assert inputs["vision_features"].data_ptr() == movie.features[:, 1:].data_ptr()  # a view, not a copy


def test_question_stage_peak_does_not_grow_with_the_frames():
    """Real widths (the 7B long-video token generator, its Q-Former cut to 2 layers): quadrupling the frames adds
    almost nothing to the stage's peak over its float16 input (the growth is the output tokens), and at 256
    frames the peak stays below the input's own size (the code before chunking added a whole-movie cast, keys
    and a float32 upcast: several times the features; a chunk's working set does not grow with the movie)."""
    result = subprocess.run(
        [sys.executable, str(HERE / "_stage_peak.py"), "16", "64", "256"],
        capture_output=True, text=True, check=True, timeout=600,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)},  # see _stage_peak.py
    )
    rows = [list(map(int, line.split())) for line in result.stdout.split("\n") if line.strip()]
    (_, peak_n, features_n), (_, peak_4n, features_4n) = rows
    assert peak_4n - peak_n <= 0.1 * (features_4n - features_n), rows
    assert peak_4n <= features_4n, rows


def _prompt_inputs(model, processor, frames: int = 40):
    from llamavid.inference.encoder import MediaFeatures

    movie = MediaFeatures(_movie(model.config, frames), "movie", subtitles=[["a few words"]] * frames)
    sample = build_sample(processor, [Turn("user", QUESTION, [movie])])
    return collate(processor, [sample], torch.device("cpu"))


def test_chunked_prefill_equals_one_pass(model_and_processor):
    from transformers import DynamicCache

    from llamavid.model.transformers_compat import CACHE_KEY

    model, processor = model_and_processor
    inputs = _prompt_inputs(model, processor)
    length = inputs["input_ids"].shape[1]
    assert length > 200
    with torch.inference_mode():
        whole = model(**inputs, logits_to_keep=1).logits[:, -1]
        cache = DynamicCache()
        continued = model.prefill(dict(inputs), cache, chunk_size=64)
        assert cache.get_seq_length() == length - 1
        last = model(input_ids=continued["input_ids"][:, -1:], attention_mask=continued["attention_mask"],
                     position_ids=torch.tensor([[length - 1]]), use_cache=True, **{CACHE_KEY: cache}).logits[:, -1]
    torch.testing.assert_close(last, whole, rtol=1e-4, atol=1e-4)


def test_generator_prefills_long_prompts_in_chunks_with_the_same_answer(model_and_processor):
    model, processor = model_and_processor
    engine = ChatEngine(model, processor)
    frames = _movie(model.config, 30)
    video = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    settings = GenerationSettings(max_new_tokens=10)
    answers = []
    for chunk in (100000, 37):
        engine.generator.configure(prefill_chunk_size=chunk)
        calls = []
        original = model.prefill
        model.prefill = lambda *a, calls=calls, original=original, **k: calls.append(1) or original(*a, **k)
        try:
            from llamavid.inference.encoder import MediaFeatures

            movie = MediaFeatures(frames, "movie", subtitles=[["words"]] * 30)
            answers.append(engine.answer([("user", QUESTION)], media=movie, settings=settings))
            answers.append(engine.answer([("user", "and the colours?")], media=video, settings=settings))
        finally:
            del model.prefill
        assert bool(calls) == (chunk == 37)
    engine.generator.configure(prefill_chunk_size=2048)
    assert answers[:2] == answers[2:]


@pytest.mark.parametrize("dtype", ["int8", "int4"])
def test_quantized_kv_cache_keeps_the_greedy_answer(model_and_processor, dtype):
    """The stated measure: on the fixture model the greedy answer (16 tokens, prompt ~300 positions past the
    cache's full-precision window) is the same token for token as with the bf16/float cache."""
    pytest.importorskip("hqq")
    model, processor = model_and_processor
    engine = ChatEngine(model, processor)
    from llamavid.inference.encoder import MediaFeatures

    movie = MediaFeatures(_movie(model.config, 25), "movie", subtitles=[["some words here"]] * 25)
    settings = GenerationSettings(max_new_tokens=16)
    answers = {}
    for name in ("auto", dtype):
        engine.generator.configure(kv_cache_dtype=name)
        answers[name] = engine.answer([("user", QUESTION)], media=movie, settings=settings)
    engine.generator.configure(kv_cache_dtype="auto")
    assert answers[dtype] == answers["auto"] and answers["auto"]


def test_kv_cache_names_and_sizes():
    assert kv_cache_bits("auto") is None and kv_cache_bits("int8") == 8 and kv_cache_bits("int4") == 4
    assert bytes_per_element("auto", 2) == 2
    assert 1 < bytes_per_element("int8", 2) < 1.1 and 0.5 < bytes_per_element("int4", 2) < 0.6
    with pytest.raises(Exception, match="int8"):
        kv_cache_bits("fp8")


def _feature_file(tmp_path, config, frames: int) -> Path:
    path = tmp_path / f"movie{frames}.safetensors"
    write_feature_file(path, FeatureFile(_movie(config, frames), [float(i) for i in range(frames)],
                                         [["two words"]] * frames))
    return path


def test_plan_reads_the_input_header_and_counts_the_prompt_as_chat_does(tiny_folder, tiny, tmp_path):
    model, processor = tiny
    path = _feature_file(tmp_path, model.config, 20)
    workload = memory_plan.workload_for(processor, QUESTION, 32, features=path)
    from llamavid.inference.feature_files import read_feature_file

    engine = ChatEngine(model, processor)
    movie = engine.encoder.movie(read_feature_file(path))
    sample = build_sample(processor, [Turn("user", QUESTION, [movie])])
    assert workload.prompt_tokens == len(sample.ids) and workload.frames == 20
    thinned = memory_plan.workload_for(processor, QUESTION, 32, features=path, max_frames=5)
    assert thinned.frames == 5 and thinned.prompt_tokens < workload.prompt_tokens
    plan = memory_plan.check_before_loading(tiny_folder, QUESTION, 32, device="cpu", features=path)
    assert plan.fits and plan.need > 0 and set(plan.stages) == {"question stage", "prefill"}


def test_chat_refuses_what_cannot_fit_before_loading(tiny_folder, tiny, tmp_path, monkeypatch, capsys):
    model, _ = tiny
    path = _feature_file(tmp_path, model.config, 40)
    # what 10 frames need, as usable: only fewer frames fit (the runtime dominates the tiny model's need)
    plan = memory_plan.check_before_loading(tiny_folder, QUESTION, 512, device="cpu", features=path,
                                            max_frames=10, available=float("inf"))
    monkeypatch.setattr(memory_plan, "available_memory", lambda device: (plan.need + 1) / (1 - memory_plan.HEADROOM))

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(ChatEngine, "from_pretrained", no_loading)
    code = main(["chat", "--model", str(tiny_folder), "--features", str(path), "--prompt", QUESTION, "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "needs about" in err and "available on cpu" in err and "--max-frames" in err
    fit = int(err.split("--max-frames ")[1].split()[0])
    assert 10 <= fit < 40


def test_plan_command_prints_the_table_and_exits_2_when_it_cannot_fit(tiny_folder, tiny, tmp_path, monkeypatch,
                                                                      capsys):
    model, _ = tiny
    path = _feature_file(tmp_path, model.config, 8)
    assert main(["plan", "--model", str(tiny_folder), "--features", str(path), "--device", "cpu"]) == 0
    table = capsys.readouterr().out
    assert "KV cache" in table or "question stage" in table
    assert "available on cpu" in table and "need" in table
    monkeypatch.setattr(memory_plan, "available_memory", lambda device: 1e6)
    assert main(["plan", "--model", str(tiny_folder), "--features", str(path), "--device", "cpu"]) == 2
    captured = capsys.readouterr()
    assert "need" in captured.out and "llamavid plan: error: this question needs" in captured.err


def test_refusal_in_a_fresh_process_is_quick_and_small(tiny_folder, tiny, tmp_path):
    """Exit 2 and one line, before anything heavy: the child's peak stays near an idle interpreter's."""
    model, _ = tiny
    path = _feature_file(tmp_path, model.config, 8)
    code = (
        "import sys; from llamavid.inference import memory_plan as m; "
        "m.available_memory = lambda device: 1e6; from llamavid.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run(
        [sys.executable, "-c", code, "chat", "--model", str(tiny_folder), "--features", str(path), "--prompt", "q",
         "--device", "cpu"], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    assert peak_mb < 1500 or before / 1024 >= 1500  # another child may have set the maximum


def test_plan_predicts_a_measured_peak_within_20_percent(tmp_path):
    """A wider-than-tiny model (weights and KV cache dominate the runtime), asked about a 300-frame movie in a fresh
    process: the plan's need is within 20% of the process's peak resident memory."""
    result = subprocess.run(
        [sys.executable, str(HERE / "_plan_versus_peak.py"), str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    )
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert abs(figures["plan_gb"] / figures["peak_gb"] - 1) <= 0.2, figures


def test_server_refuses_a_request_that_cannot_fit_with_413(tiny, monkeypatch):
    from llamavid.serve.errors import APIError
    from llamavid.serve.server import Server
    from llamavid.serve.settings import ServeSettings

    model, processor = tiny
    server = Server(ChatEngine(model, processor), ServeSettings())
    try:
        sample = server.sample([Turn("user", "hello")])
        monkeypatch.setattr(memory_plan, "available_memory", lambda device: 1.0)
        with pytest.raises(APIError) as refused:
            server.submit(sample, GenerationSettings(max_new_tokens=4), lambda kind, value: None)
        assert refused.value.status == 413 and "free on cpu" in refused.value.message
    finally:
        server.close()


def test_eval_batches_are_checked_before_any_work(tiny, monkeypatch):
    model, processor = tiny
    engine = ChatEngine(model, processor)
    sample = build_sample(processor, [Turn("user", "hello")])
    monkeypatch.setattr(memory_plan, "available_memory", lambda device: 1.0)
    monkeypatch.setattr(engine.generator, "run", lambda *a, **k: pytest.fail("generated"))
    with pytest.raises(memory_plan.MemoryPlanError):
        engine.answer_batch([sample], GenerationSettings(max_new_tokens=4))


def test_a_feature_files_features_are_out_of_the_prefills_peak_and_headroom_is_kept(model_and_processor):
    """Mapped features hand their pages back before the prefill (`MappedTensor`): a movie's prefill needs them
    no more, frames a video encodes still do; and a plan within HEADROOM of what is available is refused."""
    model, _ = model_and_processor
    config = model.config
    movie = memory_plan.Workload(frames=500, feature_tokens=1 + config.num_patches,
                                 feature_width=config.vision_config.hidden_size, feature_bytes=2,
                                 fixed_tokens=4000, tokens_per_frame=20)
    video = movie.__class__(**{**movie.__dict__, "encode": True})
    settings = memory_plan.Settings(dtype=torch.float32)
    features = movie.frames * movie.feature_tokens * movie.feature_width * 2
    for_movie, for_video = (memory_plan.plan_question(config, w, settings) for w in (movie, video))
    assert for_movie.stage == for_video.stage == "prefill"
    pixels = video.frames * 3 * config.vision_config.image_size ** 2 * 4
    vision_weights = for_video.parts["weights (vision tower)"]
    assert for_video.need - vision_weights - for_movie.need == pytest.approx(features + pixels)
    with pytest.raises(memory_plan.MemoryPlanError, match="5% of it kept free"):
        memory_plan.check(config, movie, settings, available=for_movie.need * 1.01)
    assert memory_plan.check(config, movie, settings, available=for_movie.need / 0.95 * 1.01).fits


def test_server_refuses_what_cannot_fit_even_at_its_least_before_fetching(tiny, monkeypatch):
    """The least a request needs (one frame a medium, its answer's budget) is planned before any fetch: a budget
    whose KV cache alone cannot fit is a 413 while its media are still URLs; one that fits goes on."""
    from llamavid.serve.errors import APIError
    from llamavid.serve.schemas import parse_chat_request
    from llamavid.serve.server import Server
    from llamavid.serve.settings import ServeSettings

    model, processor = tiny
    server = Server(ChatEngine(model, processor), ServeSettings(web=False))
    try:
        def request(max_tokens):
            return parse_chat_request({"max_tokens": max_tokens, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "http://192.0.2.1/never-fetched.png"}},
                {"type": "text", "text": "What is it?"}]}]})

        config = model.config.text_config
        kv_per_token = 2 * config.num_hidden_layers * config.num_key_value_heads * (
            config.hidden_size // config.num_attention_heads) * 4
        monkeypatch.setattr(memory_plan, "available_memory", lambda device: 200 * kv_per_token)
        with pytest.raises(APIError) as refused:
            server.check_request(request(1000))
        assert refused.value.status == 413 and "max_tokens" in refused.value.message
        server.check_request(request(4))
    finally:
        server.close()
