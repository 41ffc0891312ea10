"""Put a trained demo model (the `stage2` folder of `recipes/demo-smollm2.yaml`) and a few freshly generated
sample videos into the package (`llamavid/data/`), with the record of how the weights were made.

    python scripts/export_demo.py runs/demo-smollm2 [--samples-seed 2024] [--note TEXT]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

PACKAGE_DATA = Path(__file__).parents[1] / "data"  # llamavid/data: the package data of a source checkout
LIMIT_BYTES = 20 * 1024 * 1024


def _ignore(source: Path):
    """What copytree leaves out: run by-products everywhere, and the LLM's tokenizer files at the top (the LLM
    tokenizer comes with the base LLM; the Q-Former's, in its own folder, is ours and ships)."""
    anywhere = shutil.ignore_patterns("checkpoint-*", "figures.json", "stage_settings.json", "runs", "README.md")
    top = shutil.ignore_patterns("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
    return lambda folder, names: anywhere(folder, names) | (top(folder, names) if Path(folder) == source else set())


def export_model(run: Path, target: Path, note: str | None = None) -> None:
    source = run / "stage2"
    if not (source / "llm_adapter").is_dir():
        raise SystemExit(f"{source} is not an adapter model folder (train recipes/demo-smollm2.yaml first)")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=_ignore(source))
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    if size > LIMIT_BYTES:
        raise SystemExit(f"the demo model is {size / 2**20:.1f} MB, over the 20 MB the repository allows")
    figures = json.loads((run / "figures.json").read_text()) if (run / "figures.json").is_file() else {}
    record = {
        "recipe_file": "recipes/demo-smollm2.yaml",
        "seed": figures.get("seed", 0),
        "command": "llamavid make-synthetic data/demo --videos 2000 --heldout 200 --seed 0 && "
        "llamavid train recipes/demo-smollm2.yaml && python scripts/export_demo.py runs/demo-smollm2",
        **({"note": note} if note else {}),
        **{k: figures.get(k) for k in ("recipe", "evaluation")},
    }
    record["stage0"] = {k: v for k, v in figures.get("stage0", {}).items() if not k.endswith("log")}
    stages = [k for k, v in figures.items() if isinstance(v, dict) and k not in ("stage0", "evaluation")]
    for stage in stages:  # the recipe's stages, in their order
        record[stage] = {k: v for k, v in figures[stage].items() if k != "losses"}
    (target / "training.json").write_text(json.dumps(record, indent=1, default=str) + "\n")


def export_samples(target: Path, seed: int, count: int = 3) -> None:
    from .synthetic import SyntheticSettings, generate

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), SyntheticSettings(seed=seed, num_videos=48, heldout_videos=24))
        by_video: dict[str, list[dict]] = {}
        for record in json.loads((Path(tmp) / "heldout.json").read_text()):
            by_video.setdefault(record["video"], []).append(record)
        chosen = [v for v, records in sorted(by_video.items()) if any(r["type"] == "order" for r in records)]
        samples = []
        for video in chosen[:count]:
            shutil.copy(Path(tmp) / "videos" / video, target / video)
            records = {r["type"]: r for r in by_video[video]}
            samples.append({
                "video": video,
                "questions": [records[t]["conversations"][0]["value"].split("\n", 1)[1]
                              for t in ("colour", "direction", "order")],
                "answers": [records[t]["answer"] for t in ("colour", "direction", "order")],
            })
    (target / "samples.json").write_text(json.dumps(samples, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the recipe's output_dir")
    parser.add_argument("--samples-seed", type=int, default=2024, help="not the training data's seed")
    parser.add_argument("--note", help="how the run departed from the recipe's command (resumed, extended)")
    args = parser.parse_args()
    export_model(args.run, PACKAGE_DATA / "demo_model", args.note)
    export_samples(PACKAGE_DATA / "demo_videos", args.samples_seed)
    print(f"written to {PACKAGE_DATA}")
