"""Movie-scale inputs with a tiny model: does the question-dependent visual stage grow linearly, and how does the
LLM prefill over the whole movie grow?

For 900, 1800 and 3600 frames of synthetic features (the long-video layout: no CLS, one segment per frame, the
question as every frame's Q-Former prompt), each measurement runs in a fresh process so that peak memory (max
RSS above the level just before the stage) belongs to that stage alone. Prints one JSON line.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time

FRAMES = (900, 1800, 3600)
QUESTION = "What happens at the end of the movie?"
REPEATS = 3
LLM = {
    "max_position_embeddings": 16384,
    "hidden_size": 256,
    "intermediate_size": 1024,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}


def _rss_kb() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() // 1024


def measure(stage: str, frames: int) -> dict:
    import torch

    from llamavid.testing import tiny_model_and_processor

    torch.manual_seed(0)
    # an LLM wide enough that its activations, not allocator noise, dominate the measured memory
    model, processor = tiny_model_and_processor(text_overrides=LLM)
    config = model.config
    features = torch.randn(frames, config.num_patches, config.vision_config.hidden_size)
    ids, mask = processor.tokenize_qformer([QUESTION])
    counts = torch.ones(frames, dtype=torch.long)

    def visual_stage(n: int = frames) -> torch.Tensor:
        return model.get_visual_tokens(
            features[:n], ids.expand(n, -1), mask.expand(n, -1), counts[:n], vision_features_include_cls=False
        )

    with torch.inference_mode():
        visual_stage(64)  # warm-up: thread pools and lazy initialisation are not the stage's cost
        if stage == "visual":
            run = visual_stage
        else:
            text = processor.tokenize(
                "Below is a movie." + "<image>" * frames + "Now the movie end.\n" + QUESTION, [1] * frames
            )
            embeds = model.embed_inputs(torch.tensor([text]), visual_stage())

            def run():
                return model.language_model(inputs_embeds=embeds, use_cache=True, logits_to_keep=1)

        before = _rss_kb()
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": min(times), "peak_mb": max(peak - before, 0) / 1024}


def run_in_subprocess(stage: str, frames: int) -> dict:
    result = subprocess.run(
        [sys.executable, __file__, "--measure", stage, str(frames)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    figures: dict[str, float] = {}
    for stage in ("visual", "prefill"):
        results = {frames: run_in_subprocess(stage, frames) for frames in FRAMES}
        for frames, result in results.items():
            figures[f"{stage}_s_{frames}"] = round(result["seconds"], 3)
            figures[f"{stage}_peak_mb_{frames}"] = round(result["peak_mb"], 1)
        small, large = results[FRAMES[0]], results[FRAMES[-1]]
        figures[f"{stage}_time_growth"] = round(large["seconds"] / small["seconds"], 2)
        figures[f"{stage}_memory_growth"] = round(large["peak_mb"] / max(small["peak_mb"], 1e-3), 2)
    print(
        json.dumps(
            {
                "time_growth_900_3600": figures.pop("visual_time_growth"),
                "memory_growth_900_3600": figures.pop("visual_memory_growth"),
                "prefill_time_growth_900_3600": figures.pop("prefill_time_growth"),
                "prefill_memory_growth_900_3600": figures.pop("prefill_memory_growth"),
                "ttft_s_3600": figures[f"prefill_s_{FRAMES[-1]}"],
                **figures,
            }
        )
    )


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--measure":
        print(json.dumps(measure(sys.argv[2], int(sys.argv[3]))))
    else:
        main()
