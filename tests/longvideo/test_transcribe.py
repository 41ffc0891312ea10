"""`extract-features --transcribe`: audio decoding (real AAC/Opus encodes), segments to subtitles, windows with
offsets for long audio, and a tiny random Whisper model end to end through the CLI (no hub)."""

import json

import av
import numpy as np
import pytest
import torch

from llamavid.cli import build_parser, main
from llamavid.inference.engine import ChatEngine
from llamavid.inference.extract import extract_all
from llamavid.inference.feature_files import read_feature_file
from llamavid.inference.transcribe import DEFAULT_TRANSCRIPTION_MODEL, Transcriber, segments_to_subtitles
from llamavid.media import MediaWarning, Subtitle, align_subtitles, parse_srt
from llamavid.media.audio import SAMPLE_RATE, audio_windows, has_audio, load_audio
from llamavid.media.subtitles import format_srt
from llamavid.testing import write_test_video


def write_media(path, audio_codec, seconds=3.0, tone=None, rate=48000, video_codec="h264", layout="stereo"):
    """A real file with a video stream (when `video_codec`) and an audio track: `tone(t)` sampled at `rate`."""
    tone = tone or (lambda t: 0.3 * np.sin(2 * np.pi * 440.0 * t))
    with av.open(str(path), "w") as container:
        if video_codec:
            video = container.add_stream(video_codec, rate=10)
            video.height, video.width, video.pix_fmt = 32, 48, "yuv420p"
        audio = container.add_stream(audio_codec, rate=rate)
        audio.layout = layout
        planar = audio.codec_context.codec.audio_formats[0].is_planar
        channels = 2 if layout == "stereo" else 1
        total, step = int(seconds * rate), 4800
        for start in range(0, total, step):
            samples = tone(np.arange(start, min(start + step, total)) / rate).astype(np.float32)
            array = np.tile(samples, (channels, 1)) if planar else np.repeat(samples, channels)[None]
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(array), format="fltp" if planar else "flt", layout=layout
            )
            frame.sample_rate, frame.pts = rate, start
            for packet in audio.encode(frame):
                container.mux(packet)
        for packet in audio.encode():
            container.mux(packet)
        if video_codec:
            for index in range(int(seconds * 10)):
                image = np.full((32, 48, 3), index * 7 % 255, np.uint8)
                for packet in video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in video.encode():
                container.mux(packet)
    return path


def dominant_frequency(samples):
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * SAMPLE_RATE / samples.size)


@pytest.mark.parametrize(
    ("name", "audio_codec", "video_codec"), [("tone.mp4", "aac", "h264"), ("tone.webm", "libopus", "libvpx")]
)
def test_audio_tracks_decode_to_16khz_mono_float32(tmp_path, name, audio_codec, video_codec):
    path = write_media(tmp_path / name, audio_codec, seconds=3.0, video_codec=video_codec)
    assert has_audio(path)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1  # mono
    assert abs(samples.size / SAMPLE_RATE - 3.0) < 0.05  # 16 kHz: 3 s of 48 kHz stereo gives ~48000 samples
    assert abs(dominant_frequency(samples) - 440.0) < 3.0
    # FFmpeg mixes stereo down at -3 dB (0.3 x 1.41); summing the channels would give 0.6
    assert 0.35 < np.abs(samples[SAMPLE_RATE : 2 * SAMPLE_RATE]).max() < 0.5


def test_audio_windows_are_consecutive_and_bounded(tmp_path):
    path = write_media(tmp_path / "a.mp4", "aac", seconds=3.5)
    windows = list(audio_windows(path, window_seconds=1.0))
    assert [w.size for w in windows[:3]] == [SAMPLE_RATE] * 3
    assert 0 < windows[3].size <= SAMPLE_RATE and len(windows) == 4
    np.testing.assert_array_equal(np.concatenate(windows), load_audio(path))


def test_a_video_without_audio_has_no_transcript_and_warns(tmp_path):
    video = write_test_video(tmp_path / "silent.mp4", 2, fps=5)
    assert not has_audio(video) and load_audio(video) is None
    calls = []
    transcriber = Transcriber(pipeline=lambda *a, **k: calls.append(a))
    with pytest.warns(MediaWarning, match="no audio stream"):
        assert transcriber.subtitle_file(video, tmp_path / "out" / "silent.srt") is None
    assert calls == [] and not (tmp_path / "out").exists()


CHUNKS = [
    {"timestamp": (0.0, 1.5), "text": " Hello there."},
    {"timestamp": (1.5, 2.0), "text": "  "},  # empty: dropped
    {"timestamp": (2.2, 3.1), "text": " Second\nline "},
    {"timestamp": (3.4, None), "text": " cut off"},  # the model stopped mid-segment: ends with the window
]


def test_segments_become_subtitles_srt_and_per_frame_lines():
    subtitles = segments_to_subtitles(CHUNKS, offset=600.0, duration=5.0)
    assert subtitles == [
        Subtitle(600.0, 601.5, "Hello there."),
        Subtitle(602.2, 603.1, "Second line"),
        Subtitle(603.4, 605.0, "cut off"),
    ]
    text = format_srt(subtitles)
    assert text == (
        "1\n00:10:00,000 --> 00:10:01,500\nHello there.\n\n"
        "2\n00:10:02,200 --> 00:10:03,100\nSecond line\n\n"
        "3\n00:10:03,400 --> 00:10:05,000\ncut off\n"
    )
    assert parse_srt(text) == subtitles
    frames = [600.0 + t for t in range(6)]
    assert align_subtitles(parse_srt(text), frames) == [
        [],
        ["Hello there."],
        [],
        ["Second line"],
        ["cut off"],
        [],
    ]


def test_timestamps_are_clamped_to_the_window():
    chunks = [{"timestamp": (-0.5, 2.0), "text": "a"}, {"timestamp": (None, 9.0), "text": "b"}]
    assert segments_to_subtitles(chunks, offset=10.0, duration=4.0) == [
        Subtitle(10.0, 12.0, "a"),
        Subtitle(12.0, 14.0, "b"),
    ]


class BurstFinder:
    """A stand-in for the speech pipeline: one segment per window, around the loud samples it was given."""

    def __init__(self):
        self.window_sizes = []

    def __call__(self, inputs, **kwargs):
        assert kwargs["return_timestamps"] is True and inputs["sampling_rate"] == SAMPLE_RATE
        samples = inputs["raw"]
        self.window_sizes.append(samples.size)
        loud = np.flatnonzero(np.abs(samples) > 0.1)
        if not loud.size:
            return {"text": "", "chunks": []}
        start, end = loud[0] / SAMPLE_RATE, loud[-1] / SAMPLE_RATE
        return {"text": "burst", "chunks": [{"timestamp": (round(start, 2), round(end, 2)), "text": " burst"}]}


def test_long_audio_is_transcribed_in_windows_with_offsets(tmp_path):
    bursts = [100.0, 700.0, 1300.0]  # one in each 10-minute window of a 25-minute track

    def tone(t):
        loud = np.zeros_like(t, dtype=bool)
        for at in bursts:
            loud |= (t >= at) & (t < at + 1.0)
        return np.where(loud, 0.5 * np.sin(2 * np.pi * 300.0 * t), 0.001 * np.sin(2 * np.pi * 50.0 * t))

    path = write_media(
        tmp_path / "film.mkv", "pcm_s16le", seconds=25 * 60, tone=tone, rate=16000, video_codec=None, layout="mono"
    )
    finder = BurstFinder()
    subtitles = Transcriber(pipeline=finder).transcribe(path)
    assert finder.window_sizes == [600 * SAMPLE_RATE, 600 * SAMPLE_RATE, 300 * SAMPLE_RATE]  # never the whole film
    assert [s.text for s in subtitles] == ["burst"] * 3
    for subtitle, at in zip(subtitles, bursts, strict=True):
        assert subtitle.start == pytest.approx(at, abs=0.02) and subtitle.end == pytest.approx(at + 1.0, abs=0.02)


class FixedTranscript:
    def __init__(self):
        self.calls = 0

    def __call__(self, inputs, **kwargs):
        self.calls += 1
        return {"text": "", "chunks": [{"timestamp": (0.2, 1.4), "text": " Hi."}, {"timestamp": (2.5, None), "text": " Bye."}]}


def test_extraction_writes_the_transcript_beside_the_features_and_aligns_it(tiny, tmp_path):
    source = tmp_path / "videos"
    source.mkdir()
    write_media(source / "talk.mp4", "aac", seconds=3.0)
    write_media(source / "subbed.mp4", "aac", seconds=3.0)
    (source / "subbed.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nFrom the file.\n")
    transcript = FixedTranscript()
    transcriber = Transcriber(pipeline=transcript)
    encoder = ChatEngine(*tiny).encoder
    out = tmp_path / "out"
    results = list(extract_all(encoder, source, out, progress=False, transcriber=transcriber))
    assert [s for _, s, _ in results] == ["done", "done"]
    assert transcript.calls == 1  # only the video without subtitles
    assert not (out / "subbed.srt").exists()
    hi, bye = parse_srt((out / "talk.srt").read_text())
    assert hi == Subtitle(0.2, 1.4, "Hi.")
    assert bye[::2] == (2.5, "Bye.") and bye.end == pytest.approx(3.0, abs=0.05)  # open: to the audio's end
    talk = read_feature_file(out / "talk.safetensors")
    assert talk.timestamps == [0.0, 1.0, 2.0]
    assert talk.subtitles == [[], ["Hi."], ["Bye."]]
    assert talk.metadata["subtitle_file"] == "talk.srt"
    assert read_feature_file(out / "subbed.safetensors").subtitles[1] == ["From the file."]

    (out / "talk.safetensors").unlink()  # an interrupted run: the transcript is there, the features are not
    list(extract_all(encoder, source, out, progress=False, transcriber=transcriber))
    assert transcript.calls == 1 and read_feature_file(out / "talk.safetensors").subtitles == talk.subtitles


def save_tiny_whisper(folder):
    """A random 1-layer Whisper with a byte-level vocabulary, its tokenizer and feature extractor: no hub."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    vocab = {char: index for index, char in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tokenizer = WhisperTokenizer(vocab, [])
    names = ["startoftranscript", "en", "translate", "transcribe", "startoflm", "startofprev", "nospeech"]
    timestamps = [f"<|{index * 0.02:.2f}|>" for index in range(1501)]
    tokenizer.add_tokens([f"<|{n}|>" for n in names] + ["<|notimestamps|>"] + timestamps, special_tokens=True)
    end, start = vocab["<|endoftext|>"], tokenizer.convert_tokens_to_ids("<|startoftranscript|>")
    no_timestamps = tokenizer.convert_tokens_to_ids("<|notimestamps|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=16,
        decoder_ffn_dim=16,
        max_target_positions=32,
        pad_token_id=end,
        bos_token_id=end,
        eos_token_id=end,
        decoder_start_token_id=start,
    )
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=start,
        eos_token_id=end,
        pad_token_id=end,
        no_timestamps_token_id=no_timestamps,
        max_length=32,
        is_multilingual=False,
        begin_suppress_tokens=[end],
    )
    model.save_pretrained(folder)
    WhisperProcessor(WhisperFeatureExtractor(), tokenizer).save_pretrained(folder)
    return folder


def test_cli_transcribes_with_a_whisper_folder(tiny_folder, tmp_path, capsys):
    whisper = save_tiny_whisper(tmp_path / "whisper")
    write_media(tmp_path / "clip.mp4", "aac", seconds=4.0)
    out = tmp_path / "out"
    argv = ["extract-features", str(tmp_path / "clip.mp4"), "--model", str(tiny_folder), "--out", str(out)]
    assert main([*argv, "--transcribe", str(whisper), "--device", "cpu", "--no-progress"]) == 0
    assert "done:" in capsys.readouterr().out
    features = read_feature_file(out / "clip.safetensors")
    text = (out / "clip.srt").read_text(encoding="utf-8")
    for cue in parse_srt(text):  # random tokens, but real cues on the video's clock
        assert 0.0 <= cue.start <= cue.end <= 4.05 and cue.text  # AAC pads the track by a few ms
    assert features.num_frames == 4
    assert features.metadata["subtitle_file"] == ("clip.srt" if text else "")
    assert json.loads(json.dumps(features.subtitles)) == features.subtitles


def test_a_missing_transcription_model_is_a_one_line_error(tiny_folder, tmp_path, capsys):
    write_media(tmp_path / "clip.mp4", "aac", seconds=1.0)
    missing = str(tmp_path / "no-such-whisper")
    argv = ["extract-features", str(tmp_path / "clip.mp4"), "--model", str(tiny_folder), "--out", str(tmp_path)]
    assert main([*argv, "--transcribe", missing, "--no-progress"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and missing in error[0] and "--transcribe /path/to/" in error[0]


def test_transcribe_flag_defaults_to_whisper_large():
    parser = build_parser()
    assert parser.parse_args(["extract-features", "v.mp4", "--model", "m", "--out", "o"]).transcribe is None
    args = parser.parse_args(["extract-features", "v.mp4", "--model", "m", "--out", "o", "--transcribe"])
    assert args.transcribe == DEFAULT_TRANSCRIPTION_MODEL == "openai/whisper-large-v3"
