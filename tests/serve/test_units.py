"""In-process checks of the pieces: the scheduler with feature files and mixed batches, prompt layout, the
fallback engine, and the command's help."""

from __future__ import annotations

import logging
import queue

import pytest
import torch
from safetensors.torch import save_file

from llamavid.cli import build_parser
from llamavid.inference.encoder import MediaFeatures
from llamavid.inference.engine import ChatEngine
from llamavid.inference.settings import GenerationSettings
from llamavid.serve.errors import APIError
from llamavid.serve.schemas import MediaRef, Turn, parse_chat_request
from llamavid.serve.server import Server
from llamavid.serve.settings import ServeSettings
from llamavid.testing import tiny_model_and_processor


@pytest.fixture(scope="module")
def engine():
    model, processor = tiny_model_and_processor(seed=4)
    return ChatEngine(model, processor)


@pytest.fixture
def server(engine):
    server = Server(engine, ServeSettings(max_batch_size=8, batch_wait_ms=100, web=False))
    yield server
    server.close()


def run_jobs(server, samples, max_tokens=6):
    """Submit samples together; return each one's (text, finish_reason, batch size)."""
    sinks = [queue.Queue() for _ in samples]
    jobs = [  # within the scheduler's 100 ms wait for company
        server.submit(s, GenerationSettings(), lambda kind, value, q=q: q.put((kind, value)), max_tokens)
        for s, q in zip(samples, sinks, strict=True)
    ]
    results = []
    for job, sink in zip(jobs, sinks, strict=True):
        text = ""
        while True:
            kind, value = sink.get(timeout=60)
            if kind == "text":
                text += value
            elif kind == "error":
                raise value
            else:
                results.append((text, value, job.batch_size))
                break
    return results


def test_feature_files_batch_apart_from_decoded_media(engine, server):
    width = engine.config.vision_config.hidden_size
    patches = engine.model.vision_tower.model.embeddings.num_patches
    # long-video features: patch tokens only, as the Q-Former sees them in the original's movie mode
    movie = MediaFeatures(torch.randn(5, patches, width), "movie", include_cls=False, subtitles=[[]] * 5)
    assert movie.include_cls is False and movie.num_frames == 5
    frames = engine.encode_media(torch.randint(0, 255, (3, 20, 20, 3), dtype=torch.uint8).numpy())
    samples = [
        server.sample([Turn("user", "What happens?", [movie])]),
        server.sample([Turn("user", "What happens?", [frames])]),
        server.sample([Turn("user", "Just text.")]),
    ]
    results = run_jobs(server, samples)
    assert [r[1] for r in results] == ["length"] * 3
    assert (
        results[0][2] == 2 and results[1][2] == 1
    )  # the movie and the text share a batch; CLS features wait
    with pytest.raises(APIError, match="cannot be mixed"):
        server.sample([Turn("user", "Both?", [movie, frames])])


def test_bad_feature_files_are_one_line_errors(server, tmp_path):
    import gradio as gr

    from llamavid.serve.web import WebChat

    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    save_file({"other": torch.zeros(2)}, tmp_path / "empty.safetensors")
    page = WebChat(server)
    for name in ("junk", "empty"):
        with pytest.raises(gr.Error) as error:
            page.use_features(str(tmp_path / f"{name}.safetensors"))
        assert "\n" not in error.value.message


def test_follow_up_turns_show_the_media_again(engine, server):
    frames = engine.encode_media(torch.randint(0, 255, (2, 20, 20, 3), dtype=torch.uint8).numpy())
    sample = server.sample([Turn("user", "First?", [frames]), Turn("assistant", "Yes."), Turn("user", "Second?")])
    assert sample.segments == [0, 0] and sample.prompts == ["First?", "Second?"] and len(sample.media) == 1


def test_request_parsing_reads_vllm_and_sglang_video_options():
    chat = parse_chat_request(
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "video_url",
                            "video_url": {"url": "data:video/mp4;base64,AA==", "fps": 2, "max_frames": 9},
                        },
                        {"type": "text", "text": "What?"},
                    ],
                },
            ],
            "media_io_kwargs": {"video": {"num_frames": 4}},
            "max_completion_tokens": 7,
            "stop": "END",
        }
    )
    ref = chat.media_refs[0]
    assert (ref.kind, ref.fps, ref.num_frames, ref.max_frames) == ("video", 2.0, 4, 9)
    assert chat.system == "Be brief." and chat.max_tokens == 7 and chat.stop == ["END"]


def test_default_engine_falls_back_to_a_tiny_model_with_a_warning(caplog, monkeypatch, tmp_path):
    import llamavid.toy.demo
    from llamavid.cli.serve import TINY_NAME, default_engine

    monkeypatch.setattr(llamavid.toy.demo, "DEMO_MODEL", tmp_path / "no-demo-here")
    with caplog.at_level(logging.WARNING, logger="llamavid.serve"):
        engine, name = default_engine()
    assert name == TINY_NAME and "TINY RANDOM" in caplog.text
    assert engine.model.config.tokens_per_frame >= 1


def test_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = capsys.readouterr().out
    for flag in ("--allowed-local-media-path", "--api-key", "--max-body-mb", "--max-batch-size", "--no-web"):
        assert flag in text


def test_bad_flags_are_refused_before_loading(capsys):
    from llamavid.cli import main

    assert main(["serve", "--max-frames", "0"]) == 2
    assert "--max-frames must be positive" in capsys.readouterr().err


def test_web_page_answers_movies_in_the_long_video_layout(engine, server, tmp_path, monkeypatch):
    """A feature file picked on the page is answered in the movie layout, through the scheduler, streamed,
    follow-ups included."""
    from llamavid.inference.feature_files import FeatureFile, write_feature_file
    from llamavid.serve.web import WebChat

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))  # the page's upload folder

    width, patches = engine.config.vision_config.hidden_size, engine.config.num_patches
    movie = FeatureFile(
        torch.randn(6, 1 + patches, width).half(),
        [float(i) for i in range(6)],
        [["Hello."], [], [], ["Bye."], [], []],
        True,
        {},
    )
    write_feature_file(tmp_path / "movie.safetensors", movie)
    page = WebChat(server)
    picked, history, status = page.use_features(str(tmp_path / "movie.safetensors"))
    assert "6 frames" in status and picked.num_frames == 6
    states = list(page.ask("Who says hello?", history, picked, 0.0, 1.0, 5))
    history = states[-1][0]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[-1]["content"] == "".join(
        engine.chat([("user", "Who says hello?")], picked, max_new_tokens=5)
    )
    states = list(page.ask("And then?", history, picked, 0.0, 1.0, 5))
    assert [m["role"] for m in states[-1][0]] == ["user", "assistant", "user", "assistant"]


def test_a_file_is_one_cache_entry_whichever_route_it_comes_by(tmp_path):
    """`llamavid chat --cache-dir D` and a server on D share the features of the same video: the server's copy of
    the bytes (a data: URL) finds what chat computed from the file, and the web page's upload path too."""
    import base64

    from llamavid.inference.features import FeatureCache
    from llamavid.serve.schemas import MediaRef
    from llamavid.testing import write_test_video

    video = write_test_video(tmp_path / "clip.mp4", seconds=3)
    model, processor = tiny_model_and_processor(seed=5)
    chat = ChatEngine(model, processor, cache=FeatureCache(tmp_path / "cache"), max_frames=64)
    computed = chat.encode_media(str(video))
    served = ChatEngine(model, processor, cache=FeatureCache(tmp_path / "cache"), fps=1.0, max_frames=64)
    server = Server(served, ServeSettings(web=False))
    try:
        data_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
        features, cached = server.encode(MediaRef("video", data_url))
        assert cached, "the server decoded and encoded the video again"
        torch.testing.assert_close(features.features, computed.features)
        assert server.encode(MediaRef("video", str(video)), data=video)[1]
    finally:
        server.close()


def test_the_pages_sample_button_uses_the_shipped_sample_video(engine):
    """The sample is one of the bundled demo videos (what the demo model was made for), encoded as an upload of
    that file would be, and shown in the video box."""
    from llamavid.serve.web import WebChat
    from llamavid.toy.demo import sample_videos

    shipped = sample_videos()[0]["video"]
    server = Server(engine, ServeSettings(web=False, sample_video=shipped))
    try:
        page = WebChat(server)
        features, history, status, preview = page.use_sample()
        assert preview == str(shipped) and history == [] and shipped.name in status
        uploaded, _ = server.encode(MediaRef("video", str(shipped)), data=shipped)
        torch.testing.assert_close(features.features, uploaded.features)
    finally:
        server.close()


def test_serve_offers_the_bundled_sample_by_default(tmp_path):
    from llamavid.cli.serve import serve_settings
    from llamavid.toy.demo import sample_videos

    assert serve_settings(build_parser().parse_args(["serve"])).sample_video == sample_videos()[0]["video"]
    own = tmp_path / "mine.mp4"
    own.write_bytes(b"x")
    assert serve_settings(build_parser().parse_args(["serve", "--sample-video", str(own)])).sample_video == own


def test_a_movie_shown_after_other_media_is_refused_in_one_line(engine, server):
    width, patches = engine.config.vision_config.hidden_size, engine.config.num_patches
    movie = MediaFeatures(torch.randn(2, patches, width), "movie", include_cls=False, subtitles=[[], []])
    frames = engine.encode_media(torch.randint(0, 255, (2, 20, 20, 3), dtype=torch.uint8).numpy())
    with pytest.raises(APIError, match="cannot be mixed"):
        server.sample([Turn("user", "First?", [frames]), Turn("assistant", "A."), Turn("user", "Then?", [movie])])
