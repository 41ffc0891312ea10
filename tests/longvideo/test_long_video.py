"""Long videos: feature extraction (resumable), movie prompts with subtitles, the original's .pkl files."""

import pickle
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from llamavid.inference.engine import ChatEngine
from llamavid.inference.extract import extract_all
from llamavid.inference.feature_files import (
    FeatureFile,
    FeatureFileError,
    read_feature_file,
    write_feature_file,
)
from llamavid.inference.inputs import MOVIE_END, MOVIE_START, ContextLengthError
from llamavid.testing import process_memory, save_model_folder, tiny_model_and_processor, write_test_video

SRT = "1\n00:00:00,500 --> 00:00:01,500\nHello <i>there</i>.\n\n2\n00:00:03,000 --> 00:00:04,200\nGoodbye now.\n"


def write_video(path, seconds, fps=4):
    return write_test_video(path, seconds, fps=fps, size=(32, 48))


@pytest.fixture(scope="module")
def tiny_long():
    """A tiny model with linear RoPE scaling x4, as the released long-video model has x16."""
    return tiny_model_and_processor(
        seed=2,
        text_overrides={"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 10000.0}},
    )


@pytest.fixture(scope="module")
def engine(tiny_long):
    return ChatEngine(*tiny_long)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    write_video(root / "a.mp4", 6)
    (root / "a.srt").write_text(SRT)
    (root / "sub").mkdir()
    write_video(root / "sub" / "b.mp4", 3)
    return root


def test_extraction_of_two_videos_with_subtitles(engine, videos, tmp_path):
    results = list(extract_all(engine.encoder, videos, tmp_path, progress=False))
    assert [(p.relative_to(tmp_path).as_posix(), s, e) for p, s, e in results] == [
        ("a.safetensors", "done", None),
        ("sub/b.safetensors", "done", None),
    ]
    a = read_feature_file(tmp_path / "a.safetensors")
    assert a.features.dtype == torch.float16
    assert a.features.shape == (6, 1 + engine.config.num_patches, engine.config.vision_config.hidden_size)
    assert a.timestamps == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert a.subtitles == [[], ["Hello there."], [], [], ["Goodbye now."], []]
    assert a.fingerprint == engine.encoder.fingerprint
    b = read_feature_file(tmp_path / "sub" / "b.safetensors")
    assert b.num_frames == 3 and b.subtitles == [[], [], []]
    # the stored features are the tower's output for those frames
    from llamavid.media import load_video
    from llamavid.model.processing import Video

    clip = load_video(videos / "a.mp4", fps=1.0, size=engine.config.image_size)
    expected = engine.encoder.vision_features(engine.processor.preprocess(Video(clip.frames)))
    torch.testing.assert_close(a.features.float(), expected, atol=2e-3, rtol=2e-3)
    assert [s for _, s, _ in extract_all(engine.encoder, videos, tmp_path, progress=False)] == ["skipped", "skipped"]


def test_killed_extraction_resumes_to_identical_files(tiny_long, tmp_path):
    model, processor = tiny_long
    save_model_folder(model, processor, tmp_path / "model")
    source = tmp_path / "videos"
    source.mkdir()
    for index in range(4):
        write_video(source / f"v{index}.mp4", 20 if index == 0 else 150, fps=8)
    command = [
        sys.executable,
        "-m",
        "llamavid.cli",
        "extract-features",
        str(source),
        "--model",
        str(tmp_path / "model"),
        "--batch-size",
        "4",
        "--no-progress",
        "--out",
    ]
    reference = subprocess.run(
        [*command, str(tmp_path / "whole")], capture_output=True, text=True, timeout=600
    )
    assert reference.returncode == 0, reference.stderr

    killed = subprocess.Popen([*command, str(tmp_path / "resumed")], stdout=subprocess.PIPE, text=True)
    first = killed.stdout.readline()  # the first video is done: kill while the next one is in progress
    assert first.startswith("done:")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    finished = {p.name for p in (tmp_path / "resumed").glob("*.safetensors")}
    assert 1 <= len(finished) < 4

    resumed = subprocess.run(
        [*command, str(tmp_path / "resumed")], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.count("skipped:") == len(finished)
    assert not list((tmp_path / "resumed").glob(".*partial"))
    for path in sorted((tmp_path / "whole").glob("*.safetensors")):
        assert (tmp_path / "resumed" / path.name).read_bytes() == path.read_bytes(), path.name


def _movie(engine, frames, subtitles=None):
    width = engine.config.vision_config.hidden_size
    features = torch.randn(
        frames, 1 + engine.config.num_patches, width, generator=torch.Generator().manual_seed(0)
    )
    metadata = {"vision_fingerprint": engine.encoder.fingerprint}
    lines = subtitles or [[] for _ in range(frames)]
    return FeatureFile(features.half(), [float(i) for i in range(frames)], lines, True, metadata)


def test_movie_prompt_interleaves_subtitles_token_by_token(engine):
    """The released long-video layout: start prompt, per frame 2 visual positions then its subtitles, end prompt, newline,
    question; every text chunk tokenized on its own with its BOS dropped."""
    movie = _movie(engine, 3, [["Hi."], [], ["Bye", "now."]])
    inputs = engine.build_inputs([("user", "Who leaves?")], movie)
    tok, image = engine.processor.tokenizer, engine.config.image_token_id
    system = engine.processor.render_chat([("user", "X")]).split(" USER: ")[0]
    head = tok(f"{system} USER: {MOVIE_START}").input_ids
    expected = (
        head
        + [image] * 2
        + tok("Hi.").input_ids[1:]
        + [image] * 2
        + [image] * 2
        + tok(f"Bye now.{MOVIE_END}\nWho leaves? ASSISTANT:").input_ids[1:]
    )
    assert inputs["input_ids"][0].tolist() == expected
    # every frame is its own segment, each conditioned on the question; the Q-Former sees no CLS
    assert inputs["media_frame_counts"].tolist() == [1, 1, 1]
    assert inputs["vision_features"].shape[1] == engine.config.num_patches
    assert inputs["vision_features_include_cls"] is False
    prompts = engine.processor.qformer_tokenizer.batch_decode(
        inputs["qformer_input_ids"], skip_special_tokens=True
    )
    assert prompts == ["who leaves?"] * 3


def test_chat_over_a_twenty_minute_movie(engine, tmp_path):
    """A generated 20-minute video with subtitles: extracted at 1 fps, then asked about through the movie layout."""
    minutes = 20
    source = tmp_path / "movie"
    source.mkdir()
    write_test_video(source / "movie.mp4", minutes * 60, fps=1, size=(32, 48))
    cues = [f"{i + 1}\n00:{i:02d}:30,000 --> 00:{i:02d}:33,000\nMinute {i} line.\n" for i in range(minutes)]
    (source / "movie.srt").write_text("\n".join(cues))
    [(path, status, _)] = list(extract_all(engine.encoder, source, tmp_path / "features", progress=False))
    movie = engine.encode_media(path)
    assert movie.num_frames == minutes * 60
    assert sum(len(lines) for lines in movie.subtitles) == minutes
    assert movie.subtitles[32] == ["Minute 0 line."]  # ends at 33 s: the last frame before it is t = 32 s
    assert engine.context_length == 4 * 2048  # RoPE scaling from the config
    answer = "".join(engine.chat([("user", "What happens at the end?")], str(path), max_new_tokens=4))
    assert isinstance(answer, str)
    inputs = engine.build_inputs([("user", "What happens at the end?")], movie)
    assert int((inputs["input_ids"] == engine.config.image_token_id).sum()) == minutes * 60 * 2
    follow_up = [("user", "What happens at the end?"), ("assistant", answer), ("user", "And before?")]
    inputs = engine.build_inputs(follow_up, movie)
    assert int((inputs["input_ids"] == engine.config.image_token_id).sum()) == minutes * 60 * 2  # shown once


def test_movie_longer_than_the_context_says_how_many_frames_fit(engine):
    with pytest.raises(ContextLengthError, match=r"5000 frames x [\d.]+ tokens .* use at most \d+ frames"):
        engine.build_inputs([("user", "Q?")], _movie(engine, 5000))


def test_feature_file_from_another_tower_is_refused(engine, tmp_path):
    other = FeatureFile(torch.zeros(2, 17, 16).half(), [0.0, 1.0], [[], []], True, {})
    write_feature_file(tmp_path / "narrow.safetensors", other)
    with pytest.raises(FeatureFileError, match="width 16"):
        engine.load_movie(tmp_path / "narrow.safetensors")
    stamped = _movie(engine, 2)
    stamped.metadata["vision_fingerprint"] = "0" * 32
    write_feature_file(tmp_path / "other.safetensors", stamped)
    with pytest.raises(FeatureFileError, match="another vision tower"):
        engine.load_movie(tmp_path / "other.safetensors")


def test_feature_file_stamped_with_the_whole_tower_digest_is_still_accepted(engine, tmp_path):
    """Files extracted before the fingerprint sampled the tower carry the digest of every weight."""
    from llamavid.inference.features import vision_fingerprint

    whole = vision_fingerprint(engine.model, engine.processor.image_processor, whole=True)
    assert whole != engine.encoder.fingerprint
    stamped = _movie(engine, 2)
    stamped.metadata["vision_fingerprint"] = whole
    write_feature_file(tmp_path / "older.safetensors", stamped)
    assert engine.load_movie(tmp_path / "older.safetensors").fingerprint == whole


def test_original_pickle_is_imported_without_running_code(engine, tmp_path):
    feats = np.random.default_rng(0).standard_normal((3, 17, 32)).astype(np.float16)
    path = tmp_path / "tt0000001.pkl"
    path.write_bytes(pickle.dumps({"feats": feats, "inputs": "<image>Hi...<image><image>Bye"}, protocol=4))
    movie = engine.load_movie(path)
    np.testing.assert_array_equal(movie.features.numpy(), feats)
    assert movie.subtitles == [["Hi"], [], ["Bye"]] and movie.include_cls

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"feats": Evil(), "inputs": ""}))
    with pytest.raises(FeatureFileError, match="refusing to load builtins.print"):
        read_feature_file(evil)


def test_unreadable_feature_file(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"garbage")
    with pytest.raises(FeatureFileError, match="not a readable feature file"):
        read_feature_file(tmp_path / "x.safetensors")


def test_processes_share_the_videos_without_overlap(engine, videos, tmp_path):
    """Under `accelerate launch` process i of n takes every n-th video: together they cover each exactly once."""
    done = [
        [
            p.relative_to(tmp_path / str(i)).as_posix()
            for p, _, _ in extract_all(
                engine.encoder, videos, tmp_path / str(i), process_index=i, num_processes=2, progress=False
            )
        ]
        for i in range(2)
    ]
    assert done == [["a.safetensors"], ["sub/b.safetensors"]]


def test_a_bad_video_fails_alone_and_a_rerun_retries_only_it(tiny_folder, tmp_path, capsys):
    """One undecodable video in a folder: the others are extracted, the failure is listed at the end with exit
    status 1, and a rerun (the video fixed) extracts only it."""
    from llamavid.cli import main

    source, out = tmp_path / "videos", tmp_path / "out"
    source.mkdir()
    (source / "a-broken.mp4").write_bytes(b"not a video at all " * 64)
    write_video(source / "b.mp4", 2)
    argv = ["extract-features", str(source), "--model", str(tiny_folder), "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    first = capsys.readouterr()
    assert first.out.splitlines() == [f"done: {out / 'b.safetensors'}"]
    summary, failure = first.err.rstrip().splitlines()[-2:]
    assert summary == "process 0: 1 extracted, 0 already done, 1 failed (run again to retry them):"
    assert failure.startswith("failed: ") and str(source / "a-broken.mp4") in failure
    assert not (out / "a-broken.safetensors").exists()

    write_video(source / "a-broken.mp4", 2)
    assert main(argv) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"done: {out / 'a-broken.safetensors'}",
        f"skipped: {out / 'b.safetensors'}",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize("suffix", [".safetensors", ".pkl"])
def test_mapped_features_hand_their_pages_back_and_read_the_same(tmp_path, suffix):
    """Mapped from the file (a pickle's through a temporary copy): reading brings the features into memory,
    `release` takes them out again, and what is read after is still the file's."""
    features = torch.randn(400, 257, 512, generator=torch.Generator().manual_seed(0)).half()  # 105 MB
    path = tmp_path / f"movie{suffix}"
    if suffix == ".pkl":
        inputs = "<image>" * features.shape[0]
        path.write_bytes(pickle.dumps({"feats": features.numpy(), "inputs": inputs}, protocol=4))
    else:
        write_feature_file(path, FeatureFile(features, [float(i) for i in range(400)], [[] for _ in range(400)]))
    movie = read_feature_file(path, mapped=True, spill_dir=tmp_path)
    assert movie.release is not None and list(tmp_path.iterdir()) == [path]  # the spilled copy has no name
    size, before = features.numel() * 2, process_memory("VmRSS")
    assert torch.equal(movie.features, features)
    read = process_memory("VmRSS")
    assert read - before > 0.8 * size
    movie.release()
    assert read - process_memory("VmRSS") > 0.8 * size
    assert torch.equal(movie.features, features)


def test_a_movie_runs_the_q_former_once_a_conversation_and_releases_its_pages(engine, tmp_path, monkeypatch):
    """The movie is shown once, with the first question: its visual tokens are made before the prefill, its
    mapped pages handed back then, and later turns reuse the tokens; the answers are those of the in-model path."""
    path = tmp_path / "movie.safetensors"
    write_feature_file(path, _movie(engine, 6, [["Hi."], [], [], ["Bye"], [], []]))
    movie = engine.load_movie(path)
    released, runs = [], []
    monkeypatch.setattr(movie, "release_pages", lambda: released.append(len(runs)))
    original = engine.model.get_visual_tokens
    monkeypatch.setattr(engine.model, "get_visual_tokens", lambda *a, **k: runs.append(1) or original(*a, **k))
    first = [("user", "Who leaves?")]
    answer = engine.answer(first, movie, max_new_tokens=6)
    assert runs == [1] and released == [1]
    later = [*first, ("assistant", answer), ("user", "And then?")]
    engine.answer(later, movie, max_new_tokens=6)
    assert runs == [1]  # the same tokens for the follow-up
    monkeypatch.undo()
    with torch.no_grad():  # the tokens computed inside the model's forward, as `generate` on build_inputs does
        inputs = engine.build_inputs(first, movie)
        inputs.pop("visual_tokens")
        tokens = engine.model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert answer == engine.processor.decode(tokens[0, inputs["input_ids"].shape[1]:]).strip()
