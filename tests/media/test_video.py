"""Video decoding and sampling on real encodes: exact frame choice, timestamps and metadata."""

from __future__ import annotations

import subprocess

import av
import numpy as np
import pytest
from _make_media import ffmpeg_binary, index_frame, read_index, run_ffmpeg

from llamavid.media import load_video, original_indices, resized_shape, video


def assert_frames(clip, expected_indices, fps=25.0):
    expected = np.asarray(expected_indices)
    np.testing.assert_array_equal(read_index(clip.frames), expected)
    np.testing.assert_array_equal(clip.indices, expected)
    np.testing.assert_allclose(clip.timestamps, expected / fps, atol=1e-6)
    assert clip.frames.dtype == np.uint8 and clip.frames.flags.c_contiguous


def test_default_matches_original_rule(cfr_h264):
    clip = load_video(cfr_h264)
    assert_frames(clip, np.arange(0, 250, 25))
    np.testing.assert_allclose(clip.timestamps, np.arange(10.0))
    assert clip.frames.shape == (10, 32, 32, 3)
    assert (clip.width, clip.height, clip.codec, clip.native_fps) == (32, 32, "h264", 25.0)
    assert clip.num_source_frames == 250 and clip.duration == pytest.approx(10.0)
    assert not clip.approximate and clip.rotation == 0


@pytest.mark.parametrize("fps", [0.3, 0.49, 2.0, 3.0, 7.0, 25.0, 60.0])
def test_fps_steps_match_original_and_never_crash(cfr_h264, fps):
    clip = load_video(cfr_h264, fps=fps)
    assert_frames(clip, original_indices(250, 25.0, fps))


def test_step_is_never_zero():
    # The original computes round(25 / 100) = 0 and crashes.
    np.testing.assert_array_equal(original_indices(5, 25.0, 100.0), np.arange(5))


def test_num_frames_is_uniform(cfr_h264):
    assert_frames(load_video(cfr_h264, num_frames=10), np.arange(0, 250, 25))
    assert_frames(load_video(cfr_h264, num_frames=7), np.arange(7) * 250 // 7)
    assert_frames(load_video(cfr_h264, num_frames=1000), np.arange(250))


def test_max_frames_switches_to_uniform(cfr_h264):
    assert_frames(load_video(cfr_h264, fps=1, max_frames=10), np.arange(0, 250, 25))  # cap not exceeded
    assert_frames(load_video(cfr_h264, fps=1, max_frames=4), np.arange(4) * 250 // 4)
    assert_frames(load_video(cfr_h264, fps=5, max_frames=20), np.arange(20) * 250 // 20)


def test_size_resizes_shortest_edge(media):
    path = media.video("wide.mp4", fps=10, num_frames=20, size=(64, 36))
    clip = load_video(path, size=24)
    assert clip.frames.shape == (2, 24, int(24 * 64 / 36), 3)
    assert (clip.width, clip.height) == (64, 36)
    np.testing.assert_array_equal(read_index(clip.frames), [0, 10])
    assert resized_shape(36, 64, 24) == (24, 42) and resized_shape(64, 36, None) == (64, 36)


@pytest.mark.parametrize(
    ("codec", "suffix", "options"),
    [
        ("libx264", "mp4", {}),
        ("mpeg4", "mp4", {"qscale": "2"}),
        ("mpeg4", "avi", {"qscale": "2"}),
        ("libvpx-vp9", "webm", {"crf": "10", "b": "0"}),
        ("libsvtav1", "mkv", {"crf": "10", "qp": "4"}),
        ("libx265", "mp4", {"x265-params": "log-level=error"}),
        ("mjpeg", "mkv", {}),
    ],
)
def test_codecs(media, codec, suffix, options):
    size = (64, 64) if codec == "libsvtav1" else (32, 32)  # SVT-AV1 wants at least 64 px
    pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
    path = media.video(
        f"codec_{codec}.{suffix}", codec=codec, fps=10, num_frames=30, size=size, options=options, pix_fmt=pix_fmt
    )
    clip = load_video(path)
    assert_frames(clip, [0, 10, 20], fps=10.0)
    assert clip.frames.shape[1:] == (*size[::-1], 3)


def test_odd_size(media):
    path = media.video("odd.mkv", codec="libx264", pix_fmt="yuv444p", fps=5, num_frames=15, size=(33, 17))
    clip = load_video(path)
    assert clip.frames.shape == (3, 17, 33, 3)
    np.testing.assert_array_equal(read_index(clip.frames), [0, 5, 10])


def test_ten_bit(media):
    path = media.video("tenbit.mkv", codec="libx264", pix_fmt="yuv420p10le", fps=5, num_frames=15)
    clip = load_video(path)
    assert clip.frames.dtype == np.uint8
    assert_frames(clip, [0, 5, 10], fps=5.0)


def test_one_second_clip(media):
    path = media.video("one_second.mp4", fps=30, num_frames=30)
    assert_frames(load_video(path), [0], fps=30.0)
    assert_frames(load_video(path, fps=4), [0, 8, 16, 24], fps=30.0)  # step round(30/4) = 8 (banker's)


def test_nonzero_first_timestamp(media):
    path = media.video("late_start.mp4", fps=10, num_frames=40, start_pts=123)  # starts at 12.3 s
    clip = load_video(path)
    assert_frames(clip, [0, 10, 20, 30], fps=10.0)
    path = media.video("late_start.mkv", fps=10, num_frames=40, start_pts=123)
    assert_frames(load_video(path), [0, 10, 20, 30], fps=10.0)


def _vfr_times():
    # 4 s at 5 fps, then 4 s at 20 fps: index-based sampling would pick the wrong frames.
    return [200 * i for i in range(20)] + [4000 + 50 * i for i in range(80)]


@pytest.mark.parametrize("suffix", ["mp4", "mkv"])
def test_variable_frame_rate_samples_by_time(media, suffix):
    times = _vfr_times()
    path = media.video(f"vfr.{suffix}", fps=20, num_frames=len(times), times_ms=times)
    clip = load_video(path)
    expected = [0, 5, 10, 15, 20, 40, 60, 80]  # first frame at or after each whole second
    np.testing.assert_array_equal(read_index(clip.frames), expected)
    np.testing.assert_allclose(clip.timestamps, np.arange(8.0), atol=1e-3)
    clip = load_video(path, num_frames=4)  # uniform over the 7.95 s duration
    assert len(clip) == 4 and clip.timestamps[0] == 0
    assert np.all(np.diff(clip.timestamps) > 1.5)


def test_gap_longer_than_interval_gives_each_frame_once(media):
    times = [0, 100, 3500, 3600, 3700]  # 3.4 s without a frame
    path = media.video("gap.mp4", fps=10, num_frames=len(times), times_ms=times)
    clip = load_video(path)
    np.testing.assert_array_equal(read_index(clip.frames), [0, 2])
    np.testing.assert_allclose(clip.timestamps, [0.0, 3.5], atol=1e-3)


def rotation_frame(i, width, height):
    frame = index_frame(i, width, height)
    frame[:4, :4] = (255, 0, 0)  # red marker in the stored top-left corner
    return frame


def red_corner(frame):
    h, w, _ = frame.shape
    corners = {"tl": frame[1, 1], "tr": frame[1, w - 2], "bl": frame[h - 2, 1], "br": frame[h - 2, w - 2]}
    return next(k for k, v in corners.items() if v[0] > 180 and v[1] < 90)


@pytest.mark.parametrize(("rotation", "corner"), [(90, "bl"), (-90, "tr"), (180, "br"), (0, "tl")])
def test_rotation_metadata_is_applied(media, rotation, corner):
    path = media.video(f"rot{rotation}.mp4", fps=5, num_frames=10, size=(48, 32), rotation=rotation, frame_fn=rotation_frame)
    clip = load_video(path, size=16)
    turned = rotation % 180 != 0
    assert clip.frames.shape == ((2, 24, 16, 3) if turned else (2, 16, 24, 3))
    assert (clip.width, clip.height) == ((32, 48) if turned else (48, 32))
    assert clip.rotation == rotation % 360
    assert red_corner(clip.frames[0]) == corner


@pytest.mark.skipif(ffmpeg_binary() is None, reason="ffmpeg binary not installed")
def test_rotation_matches_ffmpeg_autorotate(media, tmp_path):
    source = media.video("rot_src.mp4", fps=5, num_frames=10, size=(48, 32), frame_fn=rotation_frame)
    rotated = tmp_path / "cli_rotated.mp4"
    try:  # FFmpeg 6+ sets a display matrix this way
        run_ffmpeg("-display_rotation", "90", "-i", str(source), "-c", "copy", str(rotated))
    except subprocess.CalledProcessError:  # FFmpeg 5 and older: the "rotate" tag (clockwise)
        run_ffmpeg("-i", str(source), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
    ours = load_video(rotated).frames[0]
    raw = tmp_path / "ffmpeg.rgb"
    run_ffmpeg("-i", str(rotated), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", str(raw))
    theirs = np.fromfile(raw, np.uint8).reshape(ours.shape)
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 3


def test_video_with_audio(media):
    path = media.video("with_audio.mp4", fps=10, num_frames=50, audio=True)
    assert_frames(load_video(path), [0, 10, 20, 30, 40], fps=10.0)


def test_approximate_decodes_keyframes_only(media):
    path = media.video("gop20.mp4", fps=10, num_frames=100, gop=20)
    clip = load_video(path, approximate=True)
    assert clip.approximate
    np.testing.assert_array_equal(read_index(clip.frames), [0, 20, 40, 60, 80])
    np.testing.assert_allclose(clip.timestamps, [0, 2, 4, 6, 8], atol=1e-6)
    np.testing.assert_array_equal(read_index(load_video(path, fps=0.25, approximate=True).frames), [0, 40, 80])


def test_sparse_sampling_seeks_and_returns_the_same_frames(media):
    path = media.video("gop10.mp4", fps=10, num_frames=600, gop=10)  # 60 s, keyframe every 1 s
    clip = load_video(path, num_frames=8)
    assert clip.extra["decoding"] == "seeking", "samples sparser than the keyframes are sought, not decoded through"
    assert_frames(clip, np.arange(8) * 600 // 8, fps=10.0)
    sparse = load_video(path, fps=0.2)
    assert sparse.extra["decoding"] == "seeking"
    assert_frames(sparse, original_indices(600, 10.0, 0.2), fps=10.0)
    assert load_video(path, fps=1.0).extra["decoding"] == "sequential"  # a sample per keyframe: straight through


def test_packet_scan_finds_the_keyframes_of_the_index(media):
    # libx264's B-frames put decode times a frame ahead of presentation times: the scan must read the same ones
    path = media.video("gop10.mp4", fps=10, num_frames=600, gop=10)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        indexed = video._indexed_keyframes(stream)
        if indexed is None:
            pytest.skip(f"PyAV {av.__version__} does not expose the demuxer's index (index_entries)")
        scanned = video._scanned_keyframes(container, stream)
        np.testing.assert_array_equal(scanned, indexed)
        assert len(scanned) == 60
        first = next(container.decode(stream))  # rewound: decoding starts over
        assert read_index(first.to_ndarray(format="rgb24"))[0] == 0


def test_sparse_sampling_without_an_index_seeks_to_the_same_frames(media, monkeypatch):
    # PyAV < 16 has no index_entries, and some files no index: the packet scan then drives the seeking
    path = media.video("gop10.mp4", fps=10, num_frames=600, gop=10)
    monkeypatch.setattr(video, "_indexed_keyframes", lambda stream: None)
    clip = load_video(path, num_frames=8)
    assert clip.extra["decoding"] == "seeking"
    assert_frames(clip, np.arange(8) * 600 // 8, fps=10.0)


def test_ten_minute_video(media):
    path = media.video("ten_minutes.mp4", fps=2, num_frames=1200, size=(16, 16), gop=20)
    clip = load_video(path)
    assert len(clip) == 600
    np.testing.assert_array_equal(clip.indices, np.arange(0, 1200, 2))
    np.testing.assert_allclose(clip.timestamps, np.arange(600.0))
    np.testing.assert_array_equal(read_index(clip.frames), np.arange(0, 1200, 2))
    sparse = load_video(path, num_frames=32)
    np.testing.assert_array_equal(read_index(sparse.frames), np.arange(32) * 1200 // 32)


def test_progress_is_silent_when_not_a_tty(cfr_h264, capsys):
    load_video(cfr_h264)
    load_video(cfr_h264, progress=True)  # forced on: must not break (delayed bar stays hidden)
    assert capsys.readouterr().out == ""


def test_progress_bar_when_forced(cfr_h264, capsys, monkeypatch):
    import llamavid.media.progress as progress

    monkeypatch.setattr(progress, "DELAY_S", 0.0)
    load_video(cfr_h264, progress=True)
    assert "decoding cfr_h264.mp4" in capsys.readouterr().err
    load_video(cfr_h264, progress=False)
    load_video(cfr_h264)  # auto: stderr is not a terminal under pytest
    assert capsys.readouterr().err == ""


def test_still_image_file_is_a_one_frame_video(tmp_path):
    from PIL import Image

    path = tmp_path / "still.png"
    Image.fromarray(index_frame(77, 32, 32)).save(path)
    clip = load_video(path)
    assert clip.frames.shape == (1, 32, 32, 3)
    np.testing.assert_array_equal(read_index(clip.frames), [77])


def test_metadata_extra(cfr_h264):
    clip = load_video(cfr_h264)
    assert clip.extra["pixel_format"] == "yuv420p" and "mp4" in clip.extra["container"]
