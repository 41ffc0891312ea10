"""`eval score --json` prints one shape for every benchmark: numbers at the top level, `per_*` / `*_per_*`
breakdowns as flat objects of numbers, `submission` a path, `benchmark` the name asked for."""

from __future__ import annotations

import json

import pytest

from llamavid.cli import main
from llamavid.eval import BENCHMARK_NAMES, get_benchmark
from llamavid.eval.base import llava_row

from .benchdata import make
from .judge_server import JudgeDouble

ASPECTS = ("correctness", "detail", "context", "temporal", "consistency")
CASES = [(name, ()) for name in BENCHMARK_NAMES] + [
    ("vizwiz", ("--split", "val")),
    *((f"vcgbench-{aspect}", ()) for aspect in ASPECTS),
]


def is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def shape_violations(result: dict) -> list[str]:
    wrong = []
    for key, value in result.items():
        if key in ("benchmark", "submission"):
            ok = isinstance(value, str)
        elif key.startswith("per_") or "_per_" in key:
            ok = isinstance(value, dict) and bool(value) and all(is_number(v) for v in value.values())
        else:
            ok = is_number(value)
        if not ok:
            wrong.append(key)
    return wrong


def answers_for(name: str, data, split, path):
    """An answers file as `eval run` writes it: every question answered "yes"."""
    bench = get_benchmark("vcgbench" if name.startswith("vcgbench") else name)
    items = bench.load(data, split)
    make_row = bench.make_row or llava_row
    rows = [make_row(item, ["yes"] * len(item.requests), "m") for item in items]
    if name.startswith("vcgbench-"):  # the original's per-aspect files hold that aspect's set only
        wanted = "temporal" if name == "vcgbench-temporal" else "consistency" if name == "vcgbench-consistency" else "generic"
        rows = [row for row in rows if row["set"] == wanted]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.parametrize(("name", "extra"), CASES, ids=[" ".join((n, *e)) for n, e in CASES])
def test_every_benchmark_prints_one_shape(name, extra, tmp_path, capsys):
    folder = "vcgbench" if name.startswith("vcgbench") else name
    data = make(folder, tmp_path / folder)
    split = extra[1] if extra else None
    answers = answers_for(name, data, split, tmp_path / "answers.jsonl")
    with JudgeDouble(lambda user, attempt: (200, "{'pred': 'yes', 'score': 3}")) as double:
        judge = ["--judge-base-url", double.base_url, "--judge-model", "j"]
        args = ["eval", "score", name, "--data", str(data), "--answers", str(answers), "--json", *extra, *judge]
        capsys.readouterr()
        assert main([*args, "--submission", str(tmp_path / "upload.out")] if name in ("vqav2", "vizwiz", "seed") else args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == name
    assert shape_violations(result) == []
    assert len(result) > 1


def test_one_vcgbench_aspect_is_flat_like_the_qa_benchmarks(tmp_path, capsys):
    data = make("vcgbench", tmp_path / "vcgbench")
    with JudgeDouble(lambda user, attempt: (200, "{'pred': 'yes', 'score': 4}")) as double:
        judge = ["--judge-base-url", double.base_url, "--judge-model", "j"]
        outputs = {}
        for name in ("vcgbench-temporal", "vcgbench", "msvd-qa"):
            folder = "msvd-qa" if name == "msvd-qa" else "vcgbench"
            data = make(folder, tmp_path / folder)
            answers = answers_for(name, data, None, tmp_path / f"{name}.jsonl")
            capsys.readouterr()
            assert main(["eval", "score", name, "--answers", str(answers), "--json", *judge]) == 0
            outputs[name] = json.loads(capsys.readouterr().out)
    aspect, full, qa = outputs["vcgbench-temporal"], outputs["vcgbench"], outputs["msvd-qa"]
    assert aspect["score"] == 4 and aspect["judged"] == 1 and aspect["judge_failures"] == 0
    assert "vcgbench-temporal" not in aspect
    # the keys the judged benchmarks share mean the same thing in each
    assert {"judged", "judge_failures", "judge_requests", "judge_cache_hits"} <= set(aspect) & set(full) & set(qa)
    assert full["per_aspect"] == dict.fromkeys(ASPECTS, 4)
    assert full["judged_per_aspect"] == dict.fromkeys(ASPECTS, 1) and full["judged"] == 5


def test_a_result_of_another_shape_is_a_bug_not_output(tmp_path, capsys, monkeypatch):
    import dataclasses

    import llamavid.eval

    data = make("gqa", tmp_path / "gqa")
    answers = answers_for("gqa", data, None, tmp_path / "gqa.jsonl")
    drifted = dataclasses.replace(get_benchmark("gqa"), score=lambda *a: {"accuracy": 1.0, "nested": {"x": {"y": 1.0}}})
    monkeypatch.setattr(llamavid.eval, "get_benchmark", lambda name: drifted)
    with pytest.raises(TypeError, match="nested"):
        main(["eval", "score", "gqa", "--data", str(data), "--answers", str(answers), "--json"])
    assert capsys.readouterr().out == ""
