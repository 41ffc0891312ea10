"""Training-step throughput of a tiny LLaMA-VID: video samples of 16 frames, batch 4, stage-2 settings (LLM,
Q-Former and projectors train, vision tower frozen but run every step), with and without gradient
checkpointing. Prints one JSON line: samples a second (process CPU time and wall time) and peak memory.

    python benchmarks/train_step.py [--steps 10] [--threads 1]

Each variant runs in its own process, so peak memory is that process's peak resident set (ru_maxrss: model,
optimiser, activations and the Python runtime). CPU timings with fixed threads are the comparable figure on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

FRAMES, BATCH = 16, 4


def build():
    from llamavid.testing import tiny_image_processor
    from llamavid.toy.tiny import (
        tiny_llamavid_config,
        train_qformer_tokenizer,
        train_sentencepiece_llama_tokenizer,
    )
    from llamavid.train.collator import Collator
    from llamavid.train.stages import StageSettings, apply_stage

    corpus = ["What colour is the circle? Answer with one word. red green blue yellow left right up down"] * 50
    tokenizer = train_sentencepiece_llama_tokenizer(corpus, 300)
    qformer_tokenizer = train_qformer_tokenizer(corpus)
    config = tiny_llamavid_config(len(tokenizer), len(qformer_tokenizer), image_size=64, patch_size=8)
    from llamavid.model.modeling import LlamaVidForConditionalGeneration
    from llamavid.model.processing import LlamaVidProcessor

    torch.manual_seed(0)
    model = LlamaVidForConditionalGeneration(config)
    apply_stage(model, StageSettings.preset("stage2"))
    processor = LlamaVidProcessor(tiny_image_processor(64), tokenizer, qformer_tokenizer, config)
    placeholder = config.image_token_id
    text = tokenizer("USER: What colour is the circle? ASSISTANT: red").input_ids
    sample = {
        "input_ids": [1, placeholder, *text[1:]],
        "labels": [-100] * (len(text) - 1) + text[-2:],
        "prompts": ["What colour is the circle?"],
        "pixel_values": torch.randn(FRAMES, 3, 64, 64),
        "expand_each": FRAMES * config.tokens_per_frame,
        "per_segment": 1,
    }
    batch = Collator(processor, 256)([sample] * BATCH)
    return model, batch


def measure(model, batch, steps: int, checkpointing: bool) -> dict:
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    inputs = {k: v for k, v in batch.items() if k != "labels"}

    def step():
        loss = model(**inputs, labels=batch["labels"]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(steps):
        step()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "samples_per_cpu_s": round(steps * BATCH / cpu, 2),
        "samples_per_s": round(steps * BATCH / wall, 2),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--variant", choices=["plain", "gradient_checkpointing"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # one variant in this process
        torch.set_num_threads(args.threads)
        model, batch = build()
        print(json.dumps(measure(model, batch, args.steps, args.variant == "gradient_checkpointing")))
        return
    result = {"frames": FRAMES, "batch_size": BATCH, "threads": args.threads}
    for variant in ("plain", "gradient_checkpointing"):
        command = [sys.executable, __file__, "--variant", variant, "--steps", str(args.steps),
                   "--threads", str(args.threads)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result[variant] = json.loads(output.strip().splitlines()[-1])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
