"""A movie question on a converted (release-shaped) checkpoint: peak memory and seconds per stage, measured next to
the memory plan's prediction. Prints one JSON line.

Stages, in one process (`ChatEngine`, the code path of `llamavid chat --features`): load the weights, read the
feature file, the question-dependent stage (Q-Former and token generation over every frame), the LLM prefill
(chunked past 2048 positions) and the answer. On a CPU the peak of each stage is the process's peak resident
memory (VmHWM), reset between stages through /proc/self/clear_refs; on CUDA it is the allocator's peak.

    # a release-shaped 7B with 2 of its 32 LLM layers (llamavid.testing.write_release_checkpoint + llamavid convert)
    python benchmarks/long_video_memory.py --model CONVERTED --frames 3600 --subtitle-words 4
    # a 64K-token prompt at the real width: subtitles fill the context
    python benchmarks/long_video_memory.py --model CONVERTED --frames 3600 --subtitle-words 40 --kv-cache-dtype int8
    # the same on a GPU
    python benchmarks/long_video_memory.py --model CONVERTED --frames 3600 --subtitle-words 4 --device cuda

`--layers-of-full N` extrapolates the measured prefill time and KV cache to an LLM of N layers (the 7B: 32) by
layer: the KV cache and the prefill's matmuls grow linearly with the layers, the rest does not.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

QUESTION = "What happens at the end of the movie?"
WORDS = ("the", "door", "opens", "and", "she", "runs", "away", "from", "him", "into", "night", "rain")


def rss_gb() -> float:
    from llamavid.testing import process_memory

    return process_memory("VmRSS") / 1e9


def peak_gb(device) -> float:
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device) / 1e9
    from llamavid.testing import process_memory

    return process_memory("VmHWM") / 1e9


def reset_peak(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return
    from llamavid.testing import reset_peak_memory

    reset_peak_memory()


def write_movie(path: Path, config, frames: int, words: int, seed: int = 0) -> None:
    """A random feature file in the `extract-features` format (float16, CLS kept) with `words` subtitle words a
    frame, written in slices so that making it costs no more than the file."""
    import torch
    from safetensors.torch import save_file

    from llamavid.inference.feature_files import METADATA_KEY

    generator = torch.Generator().manual_seed(seed)
    shape = (frames, 1 + config.num_patches, config.vision_config.hidden_size)
    features = torch.empty(shape, dtype=torch.float16)
    for start in range(0, frames, 256):
        features[start : start + 256] = torch.randn((min(256, frames - start), *shape[1:]), generator=generator)
    subtitles = [[" ".join(WORDS[(i + k) % len(WORDS)] for k in range(words))] if words else [] for i in range(frames)]
    metadata = {"format": "llamavid-features/1", "include_cls": True, "subtitles": subtitles}
    save_file(
        {"features": features, "timestamps": torch.arange(frames, dtype=torch.float64)},
        str(path),
        metadata={METADATA_KEY: json.dumps(metadata)},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="converted llamavid folder (release-shaped)")
    parser.add_argument("--frames", type=int, default=3600)
    parser.add_argument("--subtitle-words", type=int, default=4, help="subtitle words a frame")
    parser.add_argument("--features", help="use this feature file instead of writing a random one")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--load-4bit", action="store_true")
    parser.add_argument("--kv-cache-dtype", default="auto", choices=["auto", "int8", "int4"])
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--layers-of-full", type=int, help="extrapolate KV cache and prefill time to N LLM layers")
    parser.add_argument("--scratch", default=os.environ.get("TMPDIR", tempfile.gettempdir()))
    args = parser.parse_args()

    import torch

    from llamavid.inference.engine import ChatEngine
    from llamavid.inference.generation import GenerationSettings, Row
    from llamavid.inference.inputs import Turn, build_sample, collate
    from llamavid.inference.memory_plan import GB, check_before_loading
    from llamavid.model.configuration import LlamaVidConfig

    config = LlamaVidConfig.from_pretrained(args.model)
    movie = Path(args.features) if args.features else Path(args.scratch) / f"movie-{args.frames}-{args.subtitle_words}.safetensors"
    if not movie.exists():
        write_movie(movie, config, args.frames, args.subtitle_words)
    bits = 4 if args.load_4bit else None
    plan = check_before_loading(
        args.model, QUESTION, args.max_new_tokens, device=args.device, dtype=args.dtype, bits=bits,
        kv_cache_dtype=args.kv_cache_dtype, features=movie, available=float("inf"),
    )
    device = torch.device(args.device)
    result = {"model": Path(args.model).name, "llm_layers": config.text_config.num_hidden_layers,
              "frames": args.frames, "device": args.device, "dtype": args.dtype, "load_4bit": args.load_4bit,
              "kv_cache_dtype": args.kv_cache_dtype, "threads": torch.get_num_threads()}
    seconds, peaks = {}, {}

    def stage(name, work):
        reset_peak(device)
        start = time.perf_counter()
        value = work()
        seconds[name] = round(time.perf_counter() - start, 2)
        peaks[name] = round(peak_gb(device), 2)
        return value

    engine = stage("load", lambda: ChatEngine.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, bits=bits, kv_cache_dtype=args.kv_cache_dtype))
    media = stage("features", lambda: engine.load_movie(movie))
    sample = build_sample(engine.processor, [Turn("user", QUESTION, [media])])
    result["prompt_tokens"] = len(sample.ids)
    inputs = collate(engine.processor, [sample], engine.device)
    # the engine's path: tokens for every frame, then the mapped features' pages handed back
    tokens = stage("question_stage", lambda: engine.movie_tokens(sample, inputs))
    for key in ("vision_features", "qformer_input_ids", "qformer_attention_mask", "media_frame_counts",
                "segment_media_index", "vision_features_include_cls"):
        inputs.pop(key)
    inputs["visual_tokens"] = tokens
    del tokens
    row = Row(args.max_new_tokens, list(sample.stop))
    reset_peak(device)
    start = time.perf_counter()
    engine.generator.run(inputs, [row], GenerationSettings(max_new_tokens=args.max_new_tokens))
    end = time.perf_counter()
    seconds["prefill"] = round((row.first_token_at or end) - start, 2)
    seconds["decode"] = round(end - (row.first_token_at or end), 2)
    peaks["prefill_and_answer"] = round(peak_gb(device), 2)
    result.update(
        answer_tokens=row.completion_tokens,
        seconds=seconds,
        peak_gb=peaks,
        peak_gb_overall=max(peaks.values()),
        plan_gb={name: round(value / GB, 2) for name, value in plan.parts.items()},
        plan_need_gb=round(plan.need / GB, 2),
        plan_stage_gb={name: round(value / GB, 2) for name, value in plan.stages.items()},
        plan_stage=plan.stage,
    )
    result["plan_error"] = round(plan.need / GB / result["peak_gb_overall"] - 1, 3)
    if args.layers_of_full:
        text = config.text_config
        layers = text.num_hidden_layers
        kv = plan.parts.get("KV cache")
        per_layer_prefill = seconds["prefill"] / layers  # an upper bound: embedding and output layer included
        compute = 0.5 if args.load_4bit else torch.finfo(getattr(torch, args.dtype)).bits // 8
        layer_weights = (4 * text.hidden_size**2 + 3 * text.hidden_size * text.intermediate_size) * compute
        extra_layers = args.layers_of_full - layers
        kv_per_layer = (kv or 0) / layers
        result["extrapolated_to_layers"] = {
            "layers": args.layers_of_full,
            "prefill_seconds": round(per_layer_prefill * args.layers_of_full, 1),
            "kv_cache_gb": round(kv_per_layer * args.layers_of_full / GB, 2) if kv else None,
            "peak_gb_prefill": round(peaks["prefill_and_answer"] + extra_layers * (layer_weights + kv_per_layer) / GB, 2),
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
