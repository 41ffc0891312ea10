"""Video decoding speed: our loader against the naive and the original strategies.

Prints one JSON line. The test video (10 minutes of 1280x720 h264 at 25 fps, a keyframe
every 10 s) is generated once into ``$LLAMAVID_BENCH_CACHE`` (default
``~/.cache/llamavid-bench``) with the ffmpeg binary when present, else with PyAV.

Timed (wall clock, one run each):
  ours_s            load_video(fps=1, size=224): threaded sequential decode, kept frames only
  naive_s           decode every frame, convert every one to RGB, keep one a second
  original_s        the original's approach: single-threaded decode, convert only kept frames
  sparse32_s        load_video(num_frames=32, size=224): seeks past keyframes
  sequential_all_s  threaded decode of every frame, no conversion
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import av
import numpy as np

from llamavid.media import load_video

SECONDS, FPS, WIDTH, HEIGHT, GOP = 600, 25, 1280, 720, 250


def cache_dir() -> Path:
    root = os.environ.get("LLAMAVID_BENCH_CACHE") or Path.home() / ".cache" / "llamavid-bench"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_video(path: Path, seconds: int) -> Path:
    if path.exists():
        return path
    tmp = path.with_suffix(".tmp.mp4")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg:
        subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-g", str(GOP), "-keyint_min", str(GOP), "-sc_threshold", "0", str(tmp)],
            check=True,
        )
    else:
        _make_with_pyav(tmp, seconds)
    tmp.rename(path)
    return path


def _make_with_pyav(path: Path, seconds: int) -> None:
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"preset": "veryfast", "x264-params": f"keyint={GOP}:min-keyint={GOP}:scenecut=0"}
        for i in range(seconds * FPS):
            image = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, (xx + yy + i) % 256], -1).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def naive(path: Path) -> int:
    kept = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            if i % FPS == 0:
                kept.append(rgb)
    return len(kept)


def original(path: Path) -> int:
    kept = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = 1
        step = round(float(stream.average_rate) / 1.0)
        for i, frame in enumerate(container.decode(stream)):
            if i % step == 0:
                kept.append(frame.to_ndarray(format="rgb24"))
    return len(kept)


def sequential_all(path: Path) -> int:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        return sum(1 for _ in container.decode(stream))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=SECONDS, help="length of the generated video")
    args = parser.parse_args()
    path = make_video(cache_dir() / f"h264_{WIDTH}x{HEIGHT}_{FPS}fps_gop{GOP}_{args.seconds}s.mp4", args.seconds)

    ours_s, clip = timed(lambda: load_video(path, fps=1.0, size=224, progress=False))
    sparse32_s, sparse = timed(lambda: load_video(path, num_frames=32, size=224, progress=False))
    naive_s, naive_count = timed(lambda: naive(path))
    original_s, original_count = timed(lambda: original(path))
    sequential_all_s, total = timed(lambda: sequential_all(path))
    assert len(clip) == naive_count == original_count == args.seconds and len(sparse) == 32
    video_s = float(clip.duration)
    result = {
        "video_s": round(video_s, 3),
        "frames_decoded_total": total,
        "ours_s": round(ours_s, 3),
        "naive_s": round(naive_s, 3),
        "original_s": round(original_s, 3),
        "sparse32_s": round(sparse32_s, 3),
        "sequential_all_s": round(sequential_all_s, 3),
        "x_realtime": round(video_s / ours_s, 2),
        "speedup_vs_naive": round(naive_s / ours_s, 2),
        "speedup_vs_original": round(original_s / ours_s, 2),
        "sparse32_speedup": round(sequential_all_s / sparse32_s, 2),
        "cores": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
