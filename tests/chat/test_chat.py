"""`llamavid chat` through the real console script, and the engine's feature cache."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from llamavid.inference.engine import ChatEngine, ContextLengthError, GenerationSettings
from llamavid.inference.features import FeatureCache
from llamavid.testing import save_model_folder, tiny_model_and_processor, write_test_video


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("chat")
    model, processor = tiny_model_and_processor(seed=5)
    save_model_folder(model, processor, root / "model")
    model.config.text_config.max_position_embeddings = 40  # a model whose context a short video overflows
    save_model_folder(model, processor, root / "short")
    Image.new("RGB", (40, 30), (10, 200, 10)).save(root / "green.png")
    write_test_video(root / "clip.mp4", 4)
    (root / "notes.mp4").write_text("not a video")
    return root


def chat(files, *args, stdin=None, model="model"):
    command = [
        sys.executable,
        "-m",
        "llamavid.cli",
        "chat",
        "--model",
        str(files / model),
        "--max-new-tokens",
        "6",
    ]
    return subprocess.run(command + list(args), input=stdin, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("media", [[], ["--image", "green.png"], ["--video", "clip.mp4"]])
def test_one_shot_prints_only_the_answer(files, media):
    args = [media[0], str(files / media[1])] if media else []
    result = chat(files, *args, "--prompt", "What colour is it?")
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stdout.count("\n") <= 2


def test_seed_determinism_when_sampling(files):
    args = ["--prompt", "Hi", "--temperature", "1.0", "--max-new-tokens", "12"]
    first, second = chat(files, *args, "--seed", "1"), chat(files, *args, "--seed", "1")
    assert first.returncode == 0 and first.stdout == second.stdout
    assert chat(files, *args, "--seed", "2").stdout != first.stdout


def test_interactive_session_through_stdin(files, tmp_path):
    saved = tmp_path / "conversation.json"
    script = (
        f"Hello\n/media {files / 'green.png'}\nWhat colour?\nAnd now?\n/save {saved}\n/reset\n/nope\n/exit\n"
    )
    result = chat(files, stdin=script)
    assert result.returncode == 0, result.stderr
    record = json.loads(saved.read_text())
    assert record["media"].endswith("green.png")
    assert [m["role"] for m in record["messages"]] == ["user", "assistant", "user", "assistant"]
    assert record["messages"][0]["content"] == "What colour?"
    assert "unknown command /nope" in result.stderr
    assert len(result.stdout.strip().splitlines()) <= 3 + 3  # three answers (each at most a few lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model-missing"], None),
        (["--image", "missing.png"], "no such file"),
        (["--video", "notes.mp4"], "notes.mp4"),
        (["--template", "vicuna"], "valid names"),
        (["--temperature", "-1"], "temperature"),
    ],
)
def test_user_errors_are_one_line(files, args, message):
    if args == ["--model-missing"]:
        result = subprocess.run(
            [sys.executable, "-m", "llamavid.cli", "chat", "--model", str(files / "nope"), "--prompt", "hi"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        message = "not a llamavid model folder"
    else:
        args = [str(files / a) if a.endswith((".png", ".mp4")) else a for a in args]
        result = chat(files, *args, "--prompt", "hi")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("llamavid chat: error:")
    assert result.stdout == ""


def test_prompt_longer_than_the_context_says_how_many_frames_fit(files):
    result = chat(files, "--video", str(files / "clip.mp4"), "--prompt", "What happens?", model="short")
    assert result.returncode == 2
    assert "maximum context length is 40 tokens" in result.stderr
    assert "4 frames x 2 tokens" in result.stderr and "--max-frames" in result.stderr


# -- the engine --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine():
    model, processor = tiny_model_and_processor(seed=5)
    return ChatEngine(model, processor)


def test_second_turn_does_not_run_the_vision_tower(engine, files, monkeypatch):
    calls = []
    tower = engine.model.vision_tower
    original = tower.forward
    monkeypatch.setattr(tower, "forward", lambda pixels: calls.append(len(pixels)) or original(pixels))
    video = str(files / "clip.mp4")
    messages = [("user", "What happens?")]
    answer = "".join(engine.chat(messages, video, max_new_tokens=3))
    assert calls == [4]  # 4 s at 1 fps, one vision pass
    messages += [("assistant", answer), ("user", "And then?")]
    "".join(engine.chat(messages, video, max_new_tokens=3))
    assert calls == [4]  # the second turn reused the features


def test_disk_cache_survives_a_new_engine(files, tmp_path, monkeypatch):
    model, processor = tiny_model_and_processor(seed=5)
    first = ChatEngine(model, processor, cache=FeatureCache(tmp_path))
    features = first.encode_media(str(files / "clip.mp4")).features
    second = ChatEngine(model, processor, cache=FeatureCache(tmp_path))
    monkeypatch.setattr(model.vision_tower, "forward", lambda pixels: pytest.fail("vision tower ran again"))
    torch.testing.assert_close(second.encode_media(str(files / "clip.mp4")).features, features)


def test_every_user_turn_shows_the_media_with_its_own_question(engine):
    media = engine.encode_media(np.zeros((3, 20, 20, 3), np.uint8))
    inputs = engine.build_inputs([("user", "A?"), ("assistant", "x"), ("user", "B?")], media)
    per_turn = 3 * engine.config.tokens_per_frame
    assert int((inputs["input_ids"] == engine.config.image_token_id).sum()) == 2 * per_turn
    prompts = engine.processor.qformer_tokenizer.batch_decode(
        inputs["qformer_input_ids"], skip_special_tokens=True
    )
    assert prompts == ["a?", "b?"]


def test_text_only_and_streaming_pieces_join_to_the_answer(engine):
    pieces = list(engine.chat([("user", "Hi")], max_new_tokens=8))
    assert pieces and all(isinstance(p, str) for p in pieces)
    again = "".join(engine.chat([("user", "Hi")], max_new_tokens=8))
    assert "".join(pieces) == again


def test_stop_string_ends_the_answer(engine):
    """llava_v0 stops on "###", which is not the EOS token: generation stops there and the text excludes it."""
    out = "".join(
        engine.chat([("user", "Hi")], template="llava_v0", max_new_tokens=40, temperature=1.0, seed=0)
    )
    assert "###" not in out


def test_context_error_in_the_api(engine):
    engine.model.config.text_config.max_position_embeddings = 30
    try:
        with pytest.raises(ContextLengthError, match="use at most"):
            engine.build_inputs([("user", "Hi")], engine.encode_media(np.zeros((20, 8, 8, 3), np.uint8)))
    finally:
        engine.model.config.text_config.max_position_embeddings = 2048


def test_generation_settings_are_checked():
    with pytest.raises(ValueError, match="top_p"):
        GenerationSettings(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationSettings(max_new_tokens=0)


def test_later_turns_reuse_earlier_questions_visual_tokens(engine, files, monkeypatch):
    """A turn runs the Q-Former for its own question only; the spliced tokens equal a fresh computation."""
    video = str(files / "clip.mp4")
    media = engine.encode_media(video)
    messages = [("user", "What happens?"), ("assistant", "A bar moves."), ("user", "Which colour?")]
    engine.build_inputs(messages[:1], media)
    rows = []
    original = engine.model.token_generator.encode_queries
    monkeypatch.setattr(
        engine.model.token_generator, "encode_queries", lambda f, *a: rows.append(len(f)) or original(f, *a)
    )
    inputs = engine.build_inputs(messages, media)
    assert rows == [media.num_frames]  # only the new question's frames went through the Q-Former
    with torch.no_grad():
        cached = engine.model(**inputs).logits
        fresh = engine.model(**{k: v for k, v in inputs.items() if k != "visual_tokens"}).logits
    torch.testing.assert_close(cached, fresh)
