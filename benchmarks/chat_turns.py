"""First versus second question about the same 5-minute video with a tiny model.

The first question decodes the video (1 fps) and runs the vision tower; the second reuses the cached features
and runs only the Q-Former, token generation and the LLM. Prints one JSON line: first_s, second_s, ratio.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from llamavid.inference.engine import ChatEngine
from llamavid.testing import tiny_model_and_processor, write_test_video

SECONDS, FPS, SIZE = 300, 25, (240, 320)


def main() -> None:
    model, processor = tiny_model_and_processor()
    engine = ChatEngine(model, processor)
    with tempfile.TemporaryDirectory() as directory:
        video = Path(directory) / "five_minutes.mp4"
        write_test_video(video, SECONDS, fps=FPS, size=SIZE, keyframe_every=10 * FPS)
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
