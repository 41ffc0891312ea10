"""Request batching under load: 16 video questions one at a time, then 16 at once, against a real server.

Starts `llamavid serve` on a tiny random model (a subprocess on a free loopback port), warms it up (the video's
features are cached by the first request, as they would be for a popular video), then sends 16 requests (the
same short video, 16 different questions, greedy, 32 new tokens, streamed) sequentially and then from 16
concurrent clients. Prints one JSON line:

    sequential_s, concurrent_s, throughput_ratio (= sequential_s / concurrent_s), errors,
    p50_ttft_s, p95_ttft_s (time to first streamed token, concurrent phase), sequential_p50_ttft_s,
    answers_match (concurrent answers equal the one-at-a-time answers)

Expected: errors 0 and throughput_ratio >= 2.5, since the 16 concurrent requests share decoding steps.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from llamavid.testing import ServerProcess, tiny_model_and_processor, write_test_video


def one_request(client, video_url: str, question: str, max_tokens: int) -> tuple[float, float | None, str]:
    """(seconds, seconds to the first content token, answer) of one streamed request."""
    start = time.perf_counter()
    first, pieces = None, []
    stream = client.chat.completions.create(
        model="bench", temperature=0, max_tokens=max_tokens, stream=True,
        messages=[{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": video_url}}, {"type": "text", "text": question},
        ]}],
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - start
            pieces.append(chunk.choices[0].delta.content)
    return time.perf_counter() - start, first, "".join(pieces)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        model, processor = tiny_model_and_processor(seed=0)
        model.save_pretrained(root / "model")
        processor.save_pretrained(root / "model")
        video = write_test_video(root / "clip.mp4", seconds=8, size=(64, 96))
        video_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
        questions = [f"Question {i}: what does the red bar do in this video?" for i in range(args.requests)]
        server_args = ["--model", str(root / "model"), "--served-model-name", "bench", "--no-web",
                       "--max-batch-size", str(args.requests)]
        with ServerProcess(server_args, log=root / "server.log") as server:
            client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0, timeout=300)
            errors = 0

            def safe(question):
                nonlocal errors
                try:
                    return one_request(client, video_url, question, args.max_tokens)
                except openai.OpenAIError as error:
                    errors += 1
                    print(f"request failed: {error}", file=sys.stderr)
                    return (0.0, None, None)

            safe("warm-up")
            start = time.perf_counter()
            sequential = [safe(q) for q in questions]
            sequential_s = time.perf_counter() - start
            with ThreadPoolExecutor(args.requests) as pool:
                start = time.perf_counter()
                concurrent = list(pool.map(safe, questions))
                concurrent_s = time.perf_counter() - start
    ttfts = sorted(r[1] for r in concurrent if r[1] is not None)
    result = {
        "sequential_s": round(sequential_s, 3),
        "concurrent_s": round(concurrent_s, 3),
        "throughput_ratio": round(sequential_s / concurrent_s, 2),
        "errors": errors,
        "p50_ttft_s": round(statistics.median(ttfts), 3) if ttfts else None,
        "p95_ttft_s": round(ttfts[min(len(ttfts) - 1, int(0.95 * len(ttfts)))], 3) if ttfts else None,
        "sequential_p50_ttft_s": round(statistics.median(r[1] for r in sequential if r[1] is not None), 3),
        "answers_match": [r[2] for r in sequential] == [r[2] for r in concurrent],
        "requests": args.requests,
        "max_tokens": args.max_tokens,
    }
    print(json.dumps(result))
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
