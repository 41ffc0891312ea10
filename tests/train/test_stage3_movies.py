"""Stage 3 end to end: movie features made by `llamavid extract-features` (from video files with subtitles, and from
MovieNet's keyframe archives with its shot, meta and subtitle files), long-video QA rows in the original's format
pointing at them, a few steps of the long-video recipe (linear RoPE x16 from the context
length, features instead of pixels, Q-Former frozen), and the result answering about the movie through
`llamavid chat --features`."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from llamavid.cli import main
from llamavid.testing import write_movienet_movie, write_test_video
from llamavid.train.recipe import recipe_from_dict
from llamavid.train.run import run_recipe

RECIPE = Path(__file__).resolve().parents[2] / "recipes" / "llama-vid-7b-full-224-long-video.yaml"

SUBTITLES = """1
00:00:00,500 --> 00:00:01,800
A bar crosses
the screen...

2
00:00:03,000 --> 00:00:04,200
It gets brighter.
"""


@pytest.fixture(scope="module")
def movies(tiny_folder, tmp_path_factory):
    """A feature folder with two movies extracted from real encodes, and QA rows that name them as the original's
    long_videoqa.json does (`<name>.pkl`) and as llamavid writes them (`<name>.safetensors`)."""
    root = tmp_path_factory.mktemp("movies")
    videos, features = root / "videos", root / "features"
    videos.mkdir()
    write_test_video(videos / "film_a.mp4", seconds=5, fps=10)
    (videos / "film_a.srt").write_text(SUBTITLES)
    write_test_video(videos / "film_b.mp4", seconds=4, fps=10)
    code = main(["extract-features", str(videos), "--model", str(tiny_folder), "--out", str(features),
                 "--device", "cpu", "--dtype", "float32", "--no-progress"])
    assert code == 0
    rows = [
        {"id": "a", "video": "film_a.pkl", "conversations": [
            {"from": "human", "value": "<image>\nWhat crosses the screen?"}, {"from": "gpt", "value": "A bar."}]},
        {"id": "b", "video": "film_b.safetensors", "conversations": [
            {"from": "human", "value": "<image>\nDoes it get brighter?"}, {"from": "gpt", "value": "Yes."}]},
    ]
    (root / "long_videoqa.json").write_text(json.dumps(rows))
    return root


def keyframe_jpg(index):
    buffer = io.BytesIO()
    image = Image.new("RGB", (40, 24), (index * 20 % 256, 90, 200 - index * 10 % 200))
    image.paste((230, 30, 30), (index * 3 % 36, 0, index * 3 % 36 + 4, 24))  # a bar moving right
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def movienet(tiny_folder, tmp_path_factory):
    """Two MovieNet movies (keyframe archives, shot/meta files, one with subtitles) extracted by
    `llamavid extract-features --movienet-files`, and QA rows naming them as the original's long_videoqa.json
    does (`<imdb>.pkl`)."""
    root = tmp_path_factory.mktemp("movienet")
    keyframes, files, features = root / "keyframes", root / "files", root / "features"
    for imdb, shots, srt in (("tt0000001", 4, SUBTITLES), ("tt0000002", 3, None)):
        layout = [(s * 48, s * 48 + 47, [s * 48 + 8, s * 48 + 30]) for s in range(shots)]
        jpgs = [keyframe_jpg(i) for i in range(2 * shots)]
        write_movienet_movie(keyframes, files, imdb, layout, 1, jpgs, subtitles=srt, shuffle_seed=imdb)
    code = main(["extract-features", str(keyframes), "--movienet-files", str(files), "--model", str(tiny_folder),
                 "--out", str(features), "--device", "cpu", "--dtype", "float32", "--no-progress"])
    assert code == 0
    rows = [
        {"id": "a", "video": "tt0000001.pkl", "conversations": [
            {"from": "human", "value": "<image>\nWhat crosses the screen?"}, {"from": "gpt", "value": "A bar."}]},
        {"id": "b", "video": "tt0000002.pkl", "conversations": [
            {"from": "human", "value": "<image>\nDoes it get brighter?"}, {"from": "gpt", "value": "No."}]},
    ]
    (root / "long_videoqa.json").write_text(json.dumps(rows))
    return root


@pytest.mark.parametrize(("source", "asked"), [("movies", "film_a"), ("movienet", "tt0000001")])
def test_the_long_video_recipe_trains_on_extracted_movies_and_answers_about_one(
    tiny_folder, source, asked, request, tmp_path, capsys
):
    movies = request.getfixturevalue(source)
    raw = yaml.safe_load(RECIPE.read_text())
    raw["output_dir"] = str(tmp_path / "run")
    raw["model"] = {"path": str(tiny_folder)}
    stage = raw["stages"][0]
    base_positions = json.loads((tiny_folder / "config.json").read_text())["text_config"]["max_position_embeddings"]
    stage["group_by_modality_length"] = False  # the tiny set has one modality only
    stage["data"].update(
        data_path=str(movies / "long_videoqa.json"), image_folder=None, video_folder=str(movies),
        feature_folder=str(movies / "features"), model_max_length=16 * base_positions,
    )
    stage["training"].update(
        max_steps=2, bf16=False, tf32=False, deepspeed=None, report_to="none", save_strategy="no",
        use_cpu=True, gradient_checkpointing=False, dataloader_num_workers=0, learning_rate=1e-3,
        logging_steps=1, disable_tqdm=True,
    )
    figures = run_recipe(recipe_from_dict(raw))
    assert figures["stage3"]["steps"] == 2

    out = tmp_path / "run" / "stage3"
    config = json.loads((out / "config.json").read_text())["text_config"]
    scaling = config.get("rope_scaling") or config.get("rope_parameters")
    assert scaling["factor"] == 16.0
    before = load_file(str(tiny_folder / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    frozen = [k for k in after if k.startswith(("token_generator.qformer.", "token_generator.query_tokens"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # the Q-Former stays as it was
    assert not torch.equal(before["token_generator.content_projector.0.weight"],
                           after["token_generator.content_projector.0.weight"])

    capsys.readouterr()
    code = main(["chat", "--model", str(out), "--features", str(movies / "features" / f"{asked}.safetensors"),
                 "--prompt", "What crosses the screen?", "--max-new-tokens", "4", "--device", "cpu"])
    answer = capsys.readouterr()
    assert code == 0, answer.err
    assert answer.out.strip()


def test_a_pkl_name_finds_the_extracted_file_and_its_subtitles(tiny, movies):
    from llamavid.train.data import DataSettings, SupervisedDataset

    model, processor = tiny
    settings = DataSettings(data_path=str(movies / "long_videoqa.json"), video_folder=str(movies),
                            feature_folder=str(movies / "features"), template="imgsp_v1", model_max_length=4096)
    dataset = SupervisedDataset(settings, processor)
    media = dataset._media(dataset.records[0])
    assert media["frames"] == 5  # 5 s at 1 fps
    assert "A bar crosses the screen" in media["movie_inputs"] and "..." not in media["movie_inputs"]


def test_a_movienet_pkl_name_reads_its_keyframes_and_subtitles(tiny, movienet):
    from llamavid.train.data import DataSettings, SupervisedDataset

    model, processor = tiny
    settings = DataSettings(data_path=str(movienet / "long_videoqa.json"), video_folder=str(movienet),
                            feature_folder=str(movienet / "features"), template="imgsp_v1", model_max_length=4096)
    dataset = SupervisedDataset(settings, processor)
    first, second = (dataset._media(record) for record in dataset.records[:2])
    assert (first["frames"], second["frames"]) == (8, 6)  # every keyframe is a frame
    assert "A bar crosses the screen" in first["movie_inputs"] and "..." not in first["movie_inputs"]
    assert "It gets brighter" in first["movie_inputs"]
