"""One video-sampling policy: a model whose config samples video at 2 fps is sampled at 2 fps by every route (chat,
serve, eval, extract-features, lmms-eval in its own environment) unless a flag or request field says otherwise;
vLLM, whose video loader is not told the model, gets the flag printed by `export-vllm`."""

from __future__ import annotations

import pytest
from safetensors import safe_open

from llamavid.cli import main
from llamavid.eval.runner import AnswerGenerator
from llamavid.inference.engine import ChatEngine
from llamavid.inference.feature_files import read_feature_file
from llamavid.serve.schemas import MediaRef
from llamavid.serve.server import Server
from llamavid.serve.settings import ServeSettings
from llamavid.testing import save_model_folder, tiny_model_and_processor, write_test_video

SECONDS = 4


@pytest.fixture(scope="module")
def two_fps(tmp_path_factory):
    """(a tiny model folder whose config samples video at 2 fps, a 4-second video at 10 fps)."""
    model, processor = tiny_model_and_processor(seed=5)
    model.config.video_fps = 2.0
    folder = tmp_path_factory.mktemp("two-fps")
    save_model_folder(model, processor, folder)
    video = write_test_video(tmp_path_factory.mktemp("clip") / "clip.mp4", SECONDS, fps=10)
    return folder, video


def test_chat_serve_and_eval_sample_at_the_models_rate(two_fps):
    folder, video = two_fps
    engine = ChatEngine.from_pretrained(folder, device="cpu")
    assert engine.encode_media(video).num_frames == 2 * SECONDS
    assert AnswerGenerator(engine.model, engine.processor).engine.encode_media(video).num_frames == 2 * SECONDS
    server = Server(engine, ServeSettings(web=False))
    try:
        features, _ = server.encode(MediaRef("video", str(video)), data=video.read_bytes())
        assert features.num_frames == 2 * SECONDS
        features, _ = server.encode(MediaRef("video", str(video), fps=1.0), data=video.read_bytes())
        assert features.num_frames == SECONDS  # a request's own rate still wins
    finally:
        server.close()
    assert ChatEngine.from_pretrained(folder, device="cpu", fps=1.0).encode_media(video).num_frames == SECONDS


def test_extract_features_samples_at_the_models_rate_unless_told(two_fps, tmp_path):
    folder, video = two_fps
    assert main(["extract-features", "--model", str(folder), str(video.parent), "--out",
                 str(tmp_path / "default"), "--no-progress"]) == 0
    assert main(["extract-features", "--model", str(folder), str(video.parent), "--out",
                 str(tmp_path / "one"), "--fps", "1", "--no-progress"]) == 0
    assert read_feature_file(tmp_path / "default" / "clip.safetensors").num_frames == 2 * SECONDS
    assert read_feature_file(tmp_path / "one" / "clip.safetensors").num_frames == SECONDS
    with safe_open(str(tmp_path / "default" / "clip.safetensors"), "pt") as handle:
        assert '"fps": "2.0"' in handle.metadata()["llamavid"]


def test_export_vllm_names_the_flag_for_the_models_rate(two_fps, tmp_path, capsys):
    folder, _ = two_fps
    assert main(["export-vllm", str(folder), str(tmp_path / "vllm")]) == 0
    assert """--media-io-kwargs '{"video": {"fps": 2}}'""" in capsys.readouterr().out


def test_extraction_takes_a_sampling_object(two_fps, tmp_path):
    from llamavid.inference.extract import extract_all
    from llamavid.inference.settings import Sampling

    folder, video = two_fps
    encoder = ChatEngine.from_pretrained(folder, device="cpu").encoder
    [(path, status, _)] = list(extract_all(encoder, video.parent, tmp_path / "capped",
                                           sampling=Sampling(max_frames=3), progress=False))
    assert status == "done" and read_feature_file(path).num_frames == 3  # the model's 2 fps, then capped
    [(path, _, _)] = list(extract_all(encoder, video.parent, tmp_path / "default", progress=False))
    assert read_feature_file(path).num_frames == 2 * SECONDS


def test_the_training_dataset_samples_at_the_models_rate_through_the_processor(two_fps, tmp_path):
    import json

    from llamavid.inference.loading import load_model
    from llamavid.media import load_video
    from llamavid.model.processing import Video
    from llamavid.train.data import DataSettings, SupervisedDataset

    folder, video = two_fps
    model, processor = load_model(folder, device="cpu")
    conversation = [{"from": "human", "value": "<video>\nWhat moves?"}, {"from": "gpt", "value": "A square."}]
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"id": "a", "video": video.name, "conversations": conversation}]))
    dataset = SupervisedDataset(DataSettings(data_path=str(data), video_folder=str(video.parent)), processor)
    media = dataset._media(dataset.records[0])
    assert media["frames"] == 2 * SECONDS
    expected = processor.preprocess(Video(load_video(video, fps=2.0).frames))
    assert media["pixel_values"].equal(expected)
    one = SupervisedDataset(DataSettings(data_path=str(data), video_folder=str(video.parent), video_fps=1.0),
                            processor)
    assert one._media(one.records[0])["frames"] == SECONDS
