"""`llamavid eval run|score|merge`: generate answers, score them as published, merge shards."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from ..errors import UsageError
from ..eval import BENCHMARK_NAMES
from .flags import add_settings_flags, settings_from_args
from .plan import add_memory_flags


def _run(args: argparse.Namespace) -> int:
    """Generate answers for a benchmark (or `all`, with --data holding one folder per benchmark name)."""
    from llamavid.inference.loading import load_model

    from ..eval import get_benchmark
    from ..eval.runner import AnswerGenerator, RunSettings, run_benchmark
    from ..inference.generation import generator_for
    from .output_folders import check_writable_folder

    settings = settings_from_args(args, RunSettings, model_id=args.model_id or Path(args.model).name)
    check_writable_folder(args.out, "--out")  # before the data and the model: nothing is lost to a typo
    if settings.feature_cache:
        check_writable_folder(settings.feature_cache, "--feature-cache")
    names = list(BENCHMARK_NAMES) if args.benchmark == "all" else [args.benchmark]
    benches = [get_benchmark(name) for name in names]
    folders = {bench.name: Path(args.data) / bench.name if args.benchmark == "all" else Path(args.data) for bench in benches}
    for folder in folders.values():
        if not folder.is_dir():
            raise UsageError(f"missing benchmark folder {folder}")
    # read every question file first: a data mistake should not wait for a 7B model to load
    questions = {bench.name: bench.load(folders[bench.name], settings.split) for bench in benches}
    model, processor = load_model(args.model, device=args.device, dtype=args.dtype)
    generator_for(model, processor).configure(kv_cache_dtype=args.kv_cache_dtype)
    for bench in benches:
        cache = Path(settings.feature_cache) if settings.feature_cache else Path(args.out) / "features"
        generator = AnswerGenerator(model, processor, cache if bench.video else None)
        path = run_benchmark(bench, generator, folders[bench.name], Path(args.out), settings, questions[bench.name])
        print(f"{bench.name}: answers in {path}", flush=True)
    return 0


def _score(args: argparse.Namespace) -> int:
    """Score an answers file with the benchmark's official rules (a video benchmark through an LLM judge)."""
    from ..eval import ScoreSettings, get_benchmark
    from ..eval.base import shape_problems
    from ..eval.data import read_predictions
    from ..eval.video import scored_benchmark

    name, aspects = scored_benchmark(args.benchmark)
    bench = get_benchmark(name)
    predictions = []
    for path in args.answers:
        if not Path(path).is_file():
            raise UsageError(f"missing answers file {path}")
        predictions += read_predictions(Path(path))
    settings = settings_from_args(
        args, ScoreSettings,
        aspects=aspects,
        judge=_make_judge(args, Path(args.answers[0])) if bench.video else None,
        progress=not args.json,
    )
    if bench.needs_data_to_score and args.data is None:
        raise UsageError(f"scoring {bench.name} needs --data (the benchmark folder with the ground truth)")
    result = bench.score(Path(args.data) if args.data else None, predictions, settings)
    if settings.judge is not None:
        result["judge_requests"] = settings.judge.requests_sent
        result["judge_cache_hits"] = settings.judge.cache_hits
    problems = shape_problems(result)
    if problems:
        raise TypeError(f"{bench.name} scored into the wrong result shape: {', '.join(problems)}")
    if args.json:
        print(json.dumps({"benchmark": args.benchmark, **result}))
    else:
        print(format_table(args.benchmark, result))
    return 0


def _make_judge(args: argparse.Namespace, answers: Path):
    from ..eval.judge import Judge, JudgeSettings

    if not args.base_url or not args.model:
        raise UsageError("video benchmarks are scored by an LLM judge: give --judge-base-url and --judge-model")
    cache = Path(args.cache_dir) if args.cache_dir else answers.with_name(answers.name + ".judge-cache")
    return Judge(settings_from_args(args, JudgeSettings, api_key=os.environ.get("OPENAI_API_KEY"), cache_dir=cache))


def _merge(args: argparse.Namespace) -> int:
    """Merge the shard files of a sharded run, checking that no question is missing or answered twice."""
    from ..eval.runner import merge_shards

    path, count = merge_shards(Path(args.out), args.benchmark)
    print(f"{args.benchmark}: {count} answers merged into {path}")
    return 0


def format_table(name: str, result: dict, prefix: str = "") -> str:
    lines = [] if prefix else [name]
    for key, value in result.items():
        label = f"{prefix}{key}"
        if isinstance(value, dict):
            lines.append(format_table(name, value, prefix=label + "."))
        elif isinstance(value, float):
            lines.append(f"  {label:<40} {value:8.2f}")
        else:
            lines.append(f"  {label:<40} {value}")
    return "\n".join(lines)


def register(commands) -> None:
    from ..eval import ScoreSettings
    from ..eval.judge import JudgeSettings
    from ..eval.runner import RunSettings
    from ..eval.video import VCG_ASPECT_NAMES

    evaluate = commands.add_parser(
        "eval", help="evaluate on the twelve LLaMA-VID benchmarks", description=__doc__
    )
    sub = evaluate.add_subparsers(dest="eval_command", required=True, metavar="STEP")

    run = sub.add_parser("run", help=_run.__doc__, description=_run.__doc__)
    run.add_argument("benchmark", choices=(*BENCHMARK_NAMES, "all"))
    run.add_argument("--model", required=True, help="llamavid model folder, or a released checkpoint's hub name")
    run.add_argument("--data", required=True, help="benchmark folder in the official layout (see docs/evaluation.md)")
    run.add_argument("--out", required=True, help="folder for answers (<bench>.jsonl) and the video feature cache")
    run.add_argument("--device", default="auto")
    run.add_argument("--dtype", default=None, help="float32, float16 or bfloat16 (default: per device)")
    add_memory_flags(run)
    add_settings_flags(run, RunSettings)
    run.set_defaults(run=_run)

    score = sub.add_parser("score", help=_score.__doc__, description=_score.__doc__)
    score.add_argument("benchmark", choices=(*BENCHMARK_NAMES, *VCG_ASPECT_NAMES))
    score.add_argument("--answers", required=True, action="append", help="answers file (repeatable)")
    score.add_argument("--data", help="benchmark folder with the ground truth (image benchmarks)")
    score.add_argument("--json", action="store_true", help="print one JSON line")
    add_settings_flags(score, ScoreSettings)
    add_settings_flags(score, JudgeSettings)
    score.set_defaults(run=_score)

    merge = sub.add_parser("merge", help=_merge.__doc__, description=_merge.__doc__)
    merge.add_argument("benchmark", choices=BENCHMARK_NAMES)
    merge.add_argument("--out", required=True, help="the --out folder of the sharded runs")
    merge.set_defaults(run=_merge)


