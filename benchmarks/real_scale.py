"""The released sizes end to end, without the real weights: write a release-shaped random checkpoint (7B or 13B,
LLM cut to --layers), convert it with `llamavid convert`, load the result in bf16, 8-bit and 4-bit and answer a
text question with each. Prints one JSON line.

Every phase runs in a child process of its own, which reports its own peak resident memory (`ru_maxrss`), so
the figures are those a user's process would see. Example (the full 7B: ~16 GB of input and ~16 GB of output on
disk; run it alone, it needs most of a 24 GB machine to load in bf16):

    python benchmarks/real_scale.py --size 7b --release /scratch/7b-release --converted /scratch/7b-converted --keep
    python benchmarks/real_scale.py --size 7b --layers 2 --device cuda
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GB = 1000**3


def _peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _rss_split() -> dict:
    """Resident memory now: anonymous (cannot be dropped) and file-backed (memory-mapped weights, reclaimable)."""
    from llamavid.testing import process_memory

    return {f"{name.lower()}_gb": round(process_memory(name) / GB, 2) for name in ("RssAnon", "RssFile")}


def phase_write(args) -> dict:
    from llamavid.testing import write_release_checkpoint

    start = time.perf_counter()
    write_release_checkpoint(args.release, size=args.size, llm_layers=args.layers, variant=args.variant)
    return {
        "write_s": round(time.perf_counter() - start, 1),
        "write_peak_rss_gb": round(_peak_rss() / GB, 2),
    }


def _release(args):
    from llamavid.toy.release_layout import ReleaseCheckpoint, release_variant

    name = release_variant(args.variant or f"llama-vid-{args.size}-full-224-video-fps-1", args.size)[0]
    root = Path(args.release)
    model_dir = root / name
    return ReleaseCheckpoint(
        root=root, model_dir=model_dir, eva_path=root / "eva_vit_g.pth", processor_dir=root / "processor",
        qformer_vocab=root / "vocab.txt", instructblip_path=None, variant=name,
        llm_layers=json.loads((model_dir / "config.json").read_text())["num_hidden_layers"],
        shard_files=sorted(model_dir.glob("pytorch_model-*.bin")),
    )


def phase_convert(args) -> dict:
    import torch

    from llamavid.model.convert import convert_checkpoint

    release = _release(args)
    start = time.perf_counter()
    convert_checkpoint(
        release.model_dir, args.converted, release.processor_dir, release.qformer_vocab, release.eva_path,
        dtype=torch.bfloat16,
    )
    return {"convert_s": round(time.perf_counter() - start, 1), "convert_peak_rss_bytes": _peak_rss()}


def phase_load(args) -> dict:
    import torch

    from llamavid.inference.loading import load_model

    bits = None if args.precision == "bf16" else int(args.precision[0])
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    model, processor = load_model(args.converted, device=args.device, dtype="bfloat16", bits=bits)
    loaded_s = time.perf_counter() - start
    load_peak = _peak_rss()
    after_load = {f"after_load_{key}": value for key, value in _rss_split().items()}
    inputs = processor(processor.render_chat([("user", "What colour is the square?")])).to(model.device)
    start = time.perf_counter()
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    answer_s = time.perf_counter() - start
    index = json.loads((Path(args.converted) / "model.safetensors.index.json").read_text())
    result = {
        "load_s": round(loaded_s, 1),
        "load_peak_rss_gb": round(load_peak / GB, 2),
        "answer_8_tokens_s": round(answer_s, 1),
        "answer_peak_rss_gb": round(_peak_rss() / GB, 2),
        "bytes_per_parameter": round(model.get_memory_footprint() / index["metadata"]["total_parameters"], 3),
        "answered_tokens": int(output.shape[1] - inputs["input_ids"].shape[1]),
        **after_load,
    }
    if args.device == "cuda":
        result["gpu_peak_gb"] = round(torch.cuda.max_memory_allocated() / GB, 2)
    return result


def _child(args, phase: str, **extra) -> dict:
    command = [sys.executable, __file__, "--phase", phase, "--size", args.size, "--release", str(args.release),
               "--converted", str(args.converted), "--device", args.device]
    if args.layers is not None:
        command += ["--layers", str(args.layers)]
    if args.variant:
        command += ["--variant", args.variant]
    for key, value in extra.items():
        command += [f"--{key}", value]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="7b", choices=["7b", "13b"])
    parser.add_argument("--layers", type=int, help="LLM layers (default: the real 32 or 40)")
    parser.add_argument("--variant", help="released model name (default: the size's short-video model)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda, for loading and answering")
    parser.add_argument("--release", help="folder for the release layout (reused when it holds one)")
    parser.add_argument("--converted", help="folder for the converted model (made anew)")
    parser.add_argument("--keep", action="store_true", help="keep both folders (default: delete what was made)")
    parser.add_argument("--precisions", default="bf16,8bit,4bit", help="which loads to measure")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        phases = {"write": phase_write, "convert": phase_convert, "load": phase_load}
        print(json.dumps(phases[args.phase](args)))
        return

    scratch = Path(tempfile.mkdtemp(prefix="llamavid-real-scale-"))
    args.release = Path(args.release or scratch / "release")
    args.converted = Path(args.converted or scratch / "converted")
    made_release = not (args.release / "eva_vit_g.pth").is_file()
    result = {"size": args.size, "device": args.device}
    try:
        if made_release:
            result.update(_child(args, "write"))
        release = _release(args)
        result.update(
            llm_layers=release.llm_layers,
            input_gb=round(release.input_bytes / GB, 2),
            largest_input_shard_gb=round(release.largest_shard_bytes / GB, 2),
            eva_file_gb=round(release.eva_path.stat().st_size / GB, 2),
        )
        shutil.rmtree(args.converted, ignore_errors=True)
        converted = _child(args, "convert")
        output_bytes = sum(p.stat().st_size for p in args.converted.glob("*.safetensors"))
        peak = converted.pop("convert_peak_rss_bytes")
        result.update(
            converted,
            convert_peak_rss_gb=round(peak / GB, 2),
            convert_peak_over_largest_shard=round(peak / release.largest_shard_bytes, 3),
            convert_peak_over_converted_bytes=round(peak / output_bytes, 3),
            converted_gb=round(output_bytes / GB, 2),
        )
        for precision in args.precisions.split(","):
            measured = _child(args, "load", precision=precision)
            result.update({f"{precision}_{key}": value for key, value in measured.items()})
    finally:
        if not args.keep:
            shutil.rmtree(args.converted, ignore_errors=True)
            if made_release:
                shutil.rmtree(args.release, ignore_errors=True)
        shutil.rmtree(scratch, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
