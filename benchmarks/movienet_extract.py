"""MovieNet extraction with a tiny model: does memory stay flat as the movie gets longer?

A generated MovieNet-style movie (3 keyframes a shot, small jpgs, a subtitle every 10 s) of 2 hours (1,500 shots)
and one of 4 hours (3,000 shots) go through `extract_movienet`, each in a fresh process so that its peak RSS is
that run's alone. The keyframes are streamed from the archive a batch at a time, so the 4-hour peak should match
the 2-hour one up to the (small) features themselves. Prints one JSON line.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MOVIES = {"2h": (120, 1500), "4h": (240, 3000)}  # runtime minutes, shots
KEYFRAMES_PER_SHOT = 3
FRAMES_PER_SHOT = 120
BATCH_SIZE = 32


def make_movie(root: Path, minutes: int, shots: int) -> tuple[Path, Path]:
    from PIL import Image

    from llamavid.testing import write_movienet_movie

    video_dir, files_dir = root / "keyframes", root / "files"
    payloads = []
    for level in range(0, 256, 16):  # a few distinct small jpgs, reused: generating is not what is measured
        buffer = io.BytesIO()
        Image.new("RGB", (96, 54), (level, 255 - level, level // 2)).save(buffer, format="JPEG")
        payloads.append(buffer.getvalue())
    shots_lines = [
        (shot * FRAMES_PER_SHOT, (shot + 1) * FRAMES_PER_SHOT - 1, [shot * FRAMES_PER_SHOT + k for k in (20, 60, 100)])
        for shot in range(shots)
    ]
    jpgs = [payloads[i % len(payloads)] for i in range(shots * KEYFRAMES_PER_SHOT)]
    cues = []
    for n, second in enumerate(range(0, minutes * 60, 10), start=1):
        clock = f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}"
        cues.append(f"{n}\n{clock},000 --> {clock},900\nLine number {n}...\n")
    write_movienet_movie(video_dir, files_dir, "tt9999999", shots_lines, minutes, jpgs, subtitles="\n".join(cues))
    return video_dir, files_dir


def measure(video_dir: str, files_dir: str, out_dir: str) -> dict:
    from llamavid.inference.encoder import MediaEncoder
    from llamavid.inference.extract_movienet import extract_movienet
    from llamavid.inference.feature_files import read_feature_file
    from llamavid.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=0)
    encoder = MediaEncoder(model, processor)
    start = time.perf_counter()
    [(path, status, error)] = list(
        extract_movienet(encoder, Path(video_dir), Path(files_dir), Path(out_dir), BATCH_SIZE, progress=False)
    )
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert status == "done", error
    keyframes = read_feature_file(path).num_frames
    return {
        "keyframes": keyframes,
        "seconds": round(seconds, 2),
        "keyframes_per_s": round(keyframes / seconds, 1),
        "peak_rss_mb": round(peak, 1),
    }


def run_in_subprocess(minutes: int, shots: int) -> dict:
    with tempfile.TemporaryDirectory() as root:
        video_dir, files_dir = make_movie(Path(root), minutes, shots)
        result = subprocess.run(
            [sys.executable, __file__, "--measure", str(video_dir), str(files_dir), str(Path(root) / "out")],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    two, four = (run_in_subprocess(*MOVIES[name]) for name in ("2h", "4h"))
    print(json.dumps({**two, "4h": four, "peak_rss_growth_2h_4h": round(four["peak_rss_mb"] / two["peak_rss_mb"], 3)}))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        print(json.dumps(measure(*sys.argv[2:5])))
    else:
        main()
