"""First versus second question about the same 5-minute video with a tiny model.

The first question decodes the video (1 fps) and runs the vision tower; the second reuses the cached features
and runs only the Q-Former, token generation and the LLM. Prints one JSON line: first_s, second_s, ratio.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from llamavid.engine import ChatEngine
from llamavid.testing import tiny_model_and_processor

SECONDS, FPS, SIZE = 300, 25, (240, 320)


def write_video(path: Path) -> None:
    """A moving bar on a changing background: real h264, a keyframe every 10 s."""
    container = av.open(str(path), "w")
    stream = container.add_stream("h264", rate=FPS, options={"g": str(10 * FPS)})
    stream.height, stream.width = SIZE
    stream.pix_fmt = "yuv420p"
    for index in range(SECONDS * FPS):
        frame = np.full((*SIZE, 3), (index // FPS) % 200, np.uint8)
        x = (index * 4) % SIZE[1]
        frame[:, x : x + 16] = (220, 40, 40)
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()


def main() -> None:
    model, processor = tiny_model_and_processor()
    engine = ChatEngine(model, processor)
    with tempfile.TemporaryDirectory() as directory:
        video = Path(directory) / "five_minutes.mp4"
        write_video(video)
        messages = [("user", "What happens in this video?")]
        start = time.perf_counter()
        answer = "".join(engine.chat(messages, str(video), max_new_tokens=16))
        first_s = time.perf_counter() - start
        messages += [("assistant", answer), ("user", "And what colour is the bar?")]
        start = time.perf_counter()
        "".join(engine.chat(messages, str(video), max_new_tokens=16))
        second_s = time.perf_counter() - start
    print(
        json.dumps(
            {
                "video_s": SECONDS,
                "frames": SECONDS,
                "first_s": round(first_s, 3),
                "second_s": round(second_s, 3),
                "ratio": round(first_s / second_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
