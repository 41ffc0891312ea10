"""Helpers for tests, benchmarks and examples: tiny random models (from `llamavid.toy.tiny`, re-exported here
under their long-standing names), random checkpoints in the released layout at real widths
(`write_release_checkpoint`, from `llamavid.toy.release_layout`), a server run as a child process on a loopback
port (`ServerProcess`, from `llamavid.toy.server_process`), real test videos and label-span reading. Nothing in the package imports this
module."""

from __future__ import annotations

from pathlib import Path

from .toy.release_layout import ReleaseCheckpoint, write_release_checkpoint
from .toy.server_process import ServerProcess, free_port
from .toy.tiny import (
    tiny_config,
    tiny_image_processor,
    tiny_model_and_processor,
    tiny_qformer_tokenizer,
    tiny_tokenizer,
)


def save_model_folder(model, processor, folder) -> Path:
    """Save `model` and `processor` as a llamavid model folder (what `llamavid convert` writes); returns it."""
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def save_llm_folder(model, processor, folder) -> Path:
    """Save `model`'s LLM and tokenizer alone, as a base LLM folder (the `base_llm` of an adapter); returns it."""
    folder = Path(folder)
    model.language_model.save_pretrained(folder)
    processor.tokenizer.save_pretrained(folder)
    return folder


def write_test_video(
    path, seconds: float, fps: int = 10, size: tuple[int, int] = (48, 64), keyframe_every: int | None = None
):
    """A real h264 file: a red bar sweeping right over a background that brightens every second, so frames
    taken at different times differ. Returns `path`."""
    import av
    import numpy as np

    height, width = size
    options = {"g": str(keyframe_every)} if keyframe_every else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=fps, options=options)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for index in range(int(seconds * fps)):
            frame = np.full((height, width, 3), (index // fps * 25) % 200, np.uint8)
            x = (index * 3) % width
            frame[:, x : x + max(width // 8, 1)] = (220, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_movienet_movie(
    video_dir,
    files_dir,
    imdb: str,
    shots: list[tuple[int, int, list[int]]],
    runtime_minutes: int,
    jpgs: list[bytes],
    subtitles: str | None = None,
    shuffle_seed: int | str | None = None,
):
    """One movie as MovieNet ships it: `VIDEO_DIR/<imdb>.tar` with one jpg a keyframe
    (`<imdb>/shot_<shot>_img_<k>.jpg`), and in FILES_DIR `shot/<imdb>.txt` ("start end kf1 kf2 ..." a shot),
    `meta/<imdb>.json` (the runtime) and, when `subtitles` (srt text) is given, `subtitle/<imdb>.srt`.
    `jpgs` are the keyframes' encoded images in name order; `shuffle_seed` stores the members out of that order,
    so readers must sort them. Returns the archive's path."""
    import io
    import json
    import random
    import tarfile
    from pathlib import Path

    video_dir, files_dir = Path(video_dir), Path(files_dir)
    names = [f"{imdb}/shot_{s:04d}_img_{k}.jpg" for s, (_, _, keyframes) in enumerate(shots) for k in range(len(keyframes))]
    if len(jpgs) != len(names):
        raise ValueError(f"{len(names)} keyframes in the shots, {len(jpgs)} jpgs given")
    members = list(zip(names, jpgs, strict=True))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(members)
    video_dir.mkdir(parents=True, exist_ok=True)
    archive = video_dir / f"{imdb}.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    for folder in ("shot", "meta", "subtitle"):
        (files_dir / folder).mkdir(parents=True, exist_ok=True)
    lines = [" ".join(map(str, [start, end, *keyframes])) for start, end, keyframes in shots]
    (files_dir / "shot" / f"{imdb}.txt").write_text("\n".join(lines) + "\n")
    meta = {"imdb_id": imdb, "version": [{"runtime": f"{runtime_minutes} min", "description": ""}]}
    (files_dir / "meta" / f"{imdb}.json").write_text(json.dumps(meta))
    if subtitles is not None:
        (files_dir / "subtitle" / f"{imdb}.srt").write_text(subtitles, encoding="utf-8")
    return archive


def supervised_spans(labels: list[int], ignore_index: int = -100) -> list[tuple[int, int]]:
    """[start, end) runs of positions that carry a label (not `ignore_index`): what label-masking tests compare."""
    spans, start = [], None
    for position, label in enumerate([*labels, ignore_index]):
        if label != ignore_index and start is None:
            start = position
        if label == ignore_index and start is not None:
            spans.append((start, position))
            start = None
    return spans


def process_memory(field: str) -> int:
    """One memory field of this process's `/proc/self/status` in bytes (Linux): `VmRSS`, `VmHWM` (the peak resident
    set since start or since `reset_peak_memory`), `RssAnon`, `RssFile`."""
    with open("/proc/self/status") as handle:
        fields = dict(line.split(":", 1) for line in handle)
    return int(fields[field].split()[0]) * 1024


def reset_peak_memory() -> None:
    """Set `VmHWM` to what is resident now (Linux's `/proc/self/clear_refs`), so the next reading is the peak of what
    follows."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


__all__ = [
    "ReleaseCheckpoint",
    "ServerProcess",
    "free_port",
    "process_memory",
    "reset_peak_memory",
    "save_llm_folder",
    "save_model_folder",
    "supervised_spans",
    "tiny_config",
    "tiny_image_processor",
    "tiny_model_and_processor",
    "tiny_qformer_tokenizer",
    "tiny_tokenizer",
    "write_movienet_movie",
    "write_release_checkpoint",
    "write_test_video",
]


# -- hostile media: what a careless or malicious client may send a server -------------------------------------

_DECODER_PEAK = """
import json, sys
from llamavid.media import MediaError, load_image, load_video

def status_kb(field):
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))

before = status_kb("VmRSS")
with open("/proc/self/clear_refs", "w") as refs:  # resets the peak (VmHWM) to what is resident now
    refs.write("5")
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "image":
        load_image(path)
        outcome = "ok"
    else:
        outcome = f"{load_video(path, fps=1.0, max_frames=64, size=224).frames.shape[0]} frames"
except MediaError as error:
    outcome = type(error).__name__
print(json.dumps({"grew_mb": (status_kb("VmHWM") - before) / 1024, "outcome": outcome}))
"""


def decoder_peak(kind: str, path) -> dict:
    """How much a fresh process's peak memory (Linux's VmHWM, reset before decoding) grows while it decodes `path`
    as an "image" or a "video" (`grew_mb`), and what came of it (`outcome`: "ok", "N frames" or the error's name)."""
    import json
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _DECODER_PEAK, kind, str(path)], capture_output=True, text=True,
                          timeout=300, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def big_canvas_gif(path, side: int = 2000, frames: int = 16):
    """A few KB of GIF: a `side` x `side` canvas, one frame a second, each changing only a small square."""
    from PIL import Image

    def frame(index):
        image = Image.new("L", (side, side), 0)
        image.paste(255, (index * 2, 0, index * 2 + 2, 2))
        return image

    frame(0).save(path, save_all=True, append_images=(frame(i) for i in range(1, frames)), duration=1000, loop=0)
    return path


def huge_png(path, side: int = 13000):
    """A complete, valid black greyscale PNG of side x side written row by row (a few hundred KB on disk)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" * (side + 1)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    with open(path, "wb") as out:
        out.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def static_clip(path, frames: int = 6000, fps: int = 30, side: int = 32):
    """A still picture for `frames` frames, one keyframe at the start (as a static screen recording encodes): a few
    KB, and sampling it means decoding it straight through."""
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"x264-params": f"keyint={frames}:min-keyint={frames}:scenecut=0"}
        still = av.VideoFrame.from_ndarray(np.full((side, side, 3), 90, np.uint8), format="rgb24")
        for index in range(frames):
            still.pts = index
            container.mux(stream.encode(still))
        container.mux(stream.encode())
    return path


def drip(handler, size: int = 1000, pause: float = 0.3) -> None:
    """Answer a GET on `handler` (an `http.server.BaseHTTPRequestHandler`) with `size` bytes, one at a time with a
    `pause` between them: a host that keeps a download alive without ever finishing it."""
    import time

    handler.send_response(200)
    handler.send_header("Content-Length", str(size))
    handler.end_headers()
    try:
        for _ in range(size):
            handler.wfile.write(b"x")
            handler.wfile.flush()
            time.sleep(pause)
    except OSError:  # the client gave up
        pass
