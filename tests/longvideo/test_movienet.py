"""MovieNet input for `extract-features`: keyframe archives, shot/meta files, subtitles, failures, resuming."""

import io
import subprocess
import sys

import pytest
import torch
from PIL import Image

from llamavid.inference.engine import ChatEngine
from llamavid.inference.extract_movienet import extract_movienet
from llamavid.inference.feature_files import read_feature_file
from llamavid.media import load_image
from llamavid.model.processing import Video
from llamavid.testing import write_movienet_movie

SHOTS = 4
KEYFRAMES = (10, 50, 90)  # frame offsets of a shot's keyframes; a shot is 100 frames
RUNTIME_MINUTES = 1
# (start, end, text as written, text expected); keyframe times are 1.50, 7.52, 13.5, 16.5, 22.6, ... 58.6 s
SUBTITLES = [
    ("00:00:00,200", "00:00:01,000", "Before the first.", "Before the first."),
    ("00:00:05,000", "00:00:08,000", "Wait... what", "Wait what"),
    ("00:00:20,000", "00:00:23,000", "Line one\nline two", "Line one line two"),
    ("00:00:30,000", "00:00:31,000", "Hel\x00lo", "Hello"),
    ("00:01:10,000", "00:01:12,000", "After the end.", "After the end."),
]


def grey(index):
    return index * 7 % 256


def jpg(level):
    buffer = io.BytesIO()
    Image.new("RGB", (40, 24), (level, level, level)).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def make_movie(video_dir, files_dir, imdb, subtitles=True, corrupt=None, extra_keyframes=0):
    """A MovieNet movie; members go into the tar in shuffled order, so name order must be restored."""
    shots = [(s * 100, s * 100 + 99, [s * 100 + k for k in KEYFRAMES]) for s in range(SHOTS)]
    jpgs = [jpg(grey(i)) for i in range(SHOTS * len(KEYFRAMES))]
    stored = list(jpgs)
    if corrupt is not None:
        stored[corrupt] = b"\xff\xd8\xff\xe0 not really a jpeg"
    srt = "".join(f"{n}\n{a} --> {b}\n{text}\n\n" for n, (a, b, text, _) in enumerate(SUBTITLES, 1))
    write_movienet_movie(video_dir, files_dir, imdb, shots, RUNTIME_MINUTES, stored,
                         subtitles=srt if subtitles else None, shuffle_seed=imdb)
    if extra_keyframes:  # a shot file naming more keyframes than the archive holds
        start, end, keyframes = shots[-1]
        shots[-1] = (start, end, keyframes + [start + 95 + k for k in range(extra_keyframes)])
        lines = [" ".join(map(str, [a, b, *k])) for a, b, k in shots]
        (files_dir / "shot" / f"{imdb}.txt").write_text("\n".join(lines) + "\n")
    return jpgs


@pytest.fixture(scope="module")
def movienet(tmp_path_factory):
    root = tmp_path_factory.mktemp("movienet")
    video_dir, files_dir = root / "keyframes", root / "files"
    video_dir.mkdir()
    files_dir.mkdir()
    jpgs = make_movie(video_dir, files_dir, "tt0000001")
    make_movie(video_dir, files_dir, "tt0000002", subtitles=False)
    make_movie(video_dir, files_dir, "tt0000003", corrupt=4)
    make_movie(video_dir, files_dir, "tt0000004", extra_keyframes=1)
    make_movie(video_dir, files_dir, "tt0000005")
    (files_dir / "subtitle" / "tt0000005.srt").write_bytes(b"")
    return video_dir, files_dir, jpgs


@pytest.fixture(scope="module")
def engine(tiny):
    """The session's tiny model (its vision tower is all extraction uses)."""
    return ChatEngine(*tiny)


def expected_times():
    total = SHOTS * 100 - 1  # second column of the last shot line
    seconds = RUNTIME_MINUTES * 60
    return [(s * 100 + k) * seconds / total for s in range(SHOTS) for k in KEYFRAMES]


def seconds(clock):
    hours, minutes, rest = clock.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(rest.replace(",", "."))


def expected_subtitles(times):
    per_frame = [[] for _ in times]
    for _, end, _, text in SUBTITLES:
        before = [i for i, t in enumerate(times) if t < seconds(end)]
        per_frame[before[-1] if before else 0].append(text)  # before the first keyframe: the first one
    return per_frame


def test_movienet_features_times_subtitles_and_failures(engine, movienet, tmp_path, caplog):
    video_dir, files_dir, jpgs = movienet
    with caplog.at_level("WARNING"):
        results = list(extract_movienet(engine.encoder, video_dir, files_dir, tmp_path, batch_size=5, progress=False))
    statuses = {path.name: (status, error) for path, status, error in results}
    assert statuses["tt0000001.safetensors"] == ("done", None)
    assert statuses["tt0000002.safetensors"] == ("done", None)
    status, error = statuses["tt0000003.safetensors"]
    assert status == "failed" and "tt0000003" in error and "shot_0001_img_1.jpg" in error and "\n" not in error
    status, error = statuses["tt0000004.safetensors"]
    assert status == "failed" and "tt0000004" in error and "13 keyframes" in error and "12 jpgs" in error
    assert statuses["tt0000005.safetensors"] == ("done", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tt0000001.safetensors", "tt0000002.safetensors", "tt0000005.safetensors"
    ]
    assert "tt0000002: no subtitle file" in caplog.text
    assert "tt0000005: the subtitle file is empty" in caplog.text

    movie = read_feature_file(tmp_path / "tt0000001.safetensors")
    times = expected_times()
    assert movie.timestamps == pytest.approx(times, rel=1e-12)
    per_frame = expected_subtitles(times)
    assert per_frame[0] == ["Before the first."] and per_frame[-1] == ["After the end."]
    assert movie.subtitles == per_frame
    assert movie.fingerprint == engine.encoder.fingerprint and movie.include_cls

    # frames in member-name order (the tar holds them shuffled), each through the tower as an unpadded image
    decoded = [load_image(data) for data in jpgs]
    assert [img.getpixel((20, 12))[0] for img in decoded] == pytest.approx([grey(i) for i in range(12)], abs=2)
    expected = engine.encoder.vision_features(engine.processor.preprocess(Video(decoded)))
    torch.testing.assert_close(movie.features.float(), expected.float(), atol=2e-3, rtol=2e-3)
    assert not torch.allclose(movie.features[0].float(), movie.features[1].float(), atol=1e-2)

    for silent in ("tt0000002.safetensors", "tt0000005.safetensors"):  # no subtitle file; an empty one
        silent = read_feature_file(tmp_path / silent)
        assert silent.subtitles == [[] for _ in range(12)]
        torch.testing.assert_close(silent.features, movie.features)

    # rerun: finished movies are skipped, failed ones are tried (and fail) again
    rerun = [(p.name, s) for p, s, _ in extract_movienet(engine.encoder, video_dir, files_dir, tmp_path, progress=False)]
    assert rerun == [
        ("tt0000001.safetensors", "skipped"),
        ("tt0000002.safetensors", "skipped"),
        ("tt0000003.safetensors", "failed"),
        ("tt0000004.safetensors", "failed"),
        ("tt0000005.safetensors", "skipped"),
    ]


def test_crash_mid_movie_resumes_to_identical_files(engine, movienet, tmp_path, monkeypatch):
    video_dir, files_dir, _ = movienet
    whole = tmp_path / "whole"
    list(extract_movienet(engine.encoder, video_dir, files_dir, whole, batch_size=4, progress=False))

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    (resumed / ".tt0000001.safetensors.999.partial").write_bytes(b"left by a killed run")
    real = engine.encoder.vision_features
    calls = []

    def crash_in_second_movie(pixels):
        calls.append(1)
        if len(calls) == 5:  # 3 batches a movie: the second batch of the second movie
            raise RuntimeError("killed")
        return real(pixels)

    monkeypatch.setattr(engine.encoder, "vision_features", crash_in_second_movie)
    with pytest.raises(RuntimeError, match="killed"):
        list(extract_movienet(engine.encoder, video_dir, files_dir, resumed, batch_size=4, progress=False))
    monkeypatch.undo()
    assert sorted(p.name for p in resumed.iterdir()) == ["tt0000001.safetensors"]

    again = [s for _, s, _ in extract_movienet(engine.encoder, video_dir, files_dir, resumed, batch_size=4, progress=False)]
    assert again == ["skipped", "done", "failed", "failed", "done"]
    for name in ("tt0000001.safetensors", "tt0000002.safetensors"):
        assert (resumed / name).read_bytes() == (whole / name).read_bytes(), name


def test_processes_share_the_movies(engine, movienet, tmp_path):
    video_dir, files_dir, _ = movienet
    tmp_path.mkdir(exist_ok=True)
    busy = tmp_path / ".tt0000001.safetensors.4242.partial"  # process 0 still writing its movie
    stale = tmp_path / ".tt0000002.safetensors.999.partial"  # process 1's own, from a killed run
    busy.write_bytes(b"being written")
    stale.write_bytes(b"left by a killed run")
    second = [p.name for p, _, _ in extract_movienet(engine.encoder, video_dir, files_dir, tmp_path, 16, 1, 2, False)]
    assert busy.exists() and not stale.exists()
    busy.unlink()
    owned = [
        [p.name for p, _, _ in extract_movienet(engine.encoder, video_dir, files_dir, tmp_path, 16, 0, 2, False)],
        second,
    ]
    assert owned == [
        ["tt0000001.safetensors", "tt0000003.safetensors", "tt0000005.safetensors"],
        ["tt0000002.safetensors", "tt0000004.safetensors"],
    ]


def test_cli_extracts_movienet_and_reports_failures(tiny_folder, movienet, tmp_path):
    video_dir, files_dir, _ = movienet
    command = [sys.executable, "-m", "llamavid.cli", "extract-features", str(video_dir)]
    options = ["--movienet-files", str(files_dir), "--model", str(tiny_folder), "--out", str(tmp_path), "--no-progress"]
    result = subprocess.run([*command, *options, "--batch-size", "8"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"done: {tmp_path / 'tt0000001.safetensors'}",
        f"done: {tmp_path / 'tt0000002.safetensors'}",
        f"done: {tmp_path / 'tt0000005.safetensors'}",
    ]
    assert "3 extracted, 0 already done, 2 failed" in result.stderr
    assert "tt0000003" in result.stderr and "shot_0001_img_1.jpg" in result.stderr
    movie = read_feature_file(tmp_path / "tt0000001.safetensors")
    assert movie.subtitles == expected_subtitles(expected_times())

    refused = subprocess.run([*command, *options, "--fps", "2"], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "drop --subtitles and --fps" in refused.stderr
