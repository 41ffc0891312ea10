"""`eval run` then `eval score` for all twelve benchmarks with a tiny random model; batching, sharding and
resuming give the same answers file as one plain run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llamavid.cli import main
from llamavid.eval import BENCHMARK_NAMES

from .benchdata import make
from .judge_server import JudgeDouble

TOKENS = ["--max-new-tokens", "4", "--no-progress"]


@pytest.fixture(scope="module")
def model_dir(tiny_folder):
    return tiny_folder


def answers(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_and_score_all_twelve(model_dir, tmp_path, capsys):
    data = tmp_path / "data"
    for name in BENCHMARK_NAMES:
        make(name, data / name)
    out = tmp_path / "out"
    assert main(["eval", "run", "all", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--batch-size", "4", "--greedy", *TOKENS]) == 0
    with JudgeDouble(lambda user, attempt: (200, "{'pred': 'no', 'score': 2}")) as double:
        for name in BENCHMARK_NAMES:
            path = out / f"{name}.jsonl"
            rows = answers(path)
            assert {"question_id", "prompt", "text", "answer_id", "model_id", "metadata"} <= set(rows[0])
            judge = ["--judge-base-url", double.base_url, "--judge-model", "j"]
            capsys.readouterr()
            assert main(["eval", "score", name, "--data", str(data / name), "--answers", str(path), "--json", *judge]) == 0
            result = json.loads(capsys.readouterr().out)
            assert result["benchmark"] == name
            if name in ("msvd-qa", "msrvtt-qa", "activitynet-qa"):
                assert result["accuracy"] == 0.0 and result["average_score"] == 2.0 and result["judge_failures"] == 0
            elif name == "vcgbench":
                assert result["per_aspect"]["consistency"] == 2.0
            elif name in ("vqav2", "vizwiz"):
                assert result["missing"] == 1 if name == "vqav2" else result["missing"] == 0  # 2000 not asked
            elif name == "mmbench":
                assert 0.0 <= result["accuracy"] <= 100.0 and Path(result["submission"]).is_file()
            else:
                assert result.get("missing", 0) == 0
    # the video features were cached on disk: a second run of another benchmark on them skips the tower
    assert len(list((out / "features").glob("*.safetensors"))) >= 2


def test_batch_16_equals_batch_1_and_shards_merge(model_dir, tmp_path):
    data = make("pope", tmp_path / "pope")
    args = ["--model", str(model_dir), "--data", str(data), *TOKENS]
    main(["eval", "run", "pope", *args, "--out", str(tmp_path / "bs1"), "--batch-size", "1"])
    main(["eval", "run", "pope", *args, "--out", str(tmp_path / "bs16"), "--batch-size", "16"])
    one = (tmp_path / "bs1" / "pope.jsonl").read_text()
    assert (tmp_path / "bs16" / "pope.jsonl").read_text() == one
    for index in range(2):
        main(["eval", "run", "pope", *args, "--out", str(tmp_path / "sh"), "--num-shards", "2", "--shard-index", str(index), "--batch-size", "2"])
    assert main(["eval", "merge", "pope", "--out", str(tmp_path / "sh")]) == 0
    assert (tmp_path / "sh" / "pope.jsonl").read_text() == one


def test_merge_refuses_incomplete_shards(model_dir, tmp_path, capsys):
    data = make("gqa", tmp_path / "gqa")
    main(["eval", "run", "gqa", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"), "--num-shards", "2", "--shard-index", "0", *TOKENS])
    assert main(["eval", "merge", "gqa", "--out", str(tmp_path / "o")]) == 2
    assert "shard(s) [1] of 2 are missing" in capsys.readouterr().err
    main(["eval", "run", "gqa", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path / "o"), "--num-shards", "2", "--shard-index", "1", *TOKENS])
    with open(tmp_path / "o" / "gqa.shard1of2.jsonl", "a") as handle:  # a duplicated answer
        handle.write((tmp_path / "o" / "gqa.shard0of2.jsonl").read_text())
    assert main(["eval", "merge", "gqa", "--out", str(tmp_path / "o")]) == 2
    assert "answered twice" in capsys.readouterr().err


def test_resume_after_sigkill(model_dir, tmp_path):
    data = make("vqav2", tmp_path / "vqav2")
    extra = [{"question_id": 3000 + i, "image": "COCO_test2015_000000000000.jpg", "text": f"Question {i}?"} for i in range(9)]
    with open(data / "llava_vqav2_mscoco_test-dev2015.jsonl", "a") as handle:
        handle.write("".join(json.dumps(row) + "\n" for row in extra))
    base = ["--model", str(model_dir), "--data", str(data), "--batch-size", "1", "--max-new-tokens", "24", "--no-progress"]
    assert main(["eval", "run", "vqav2", *base, "--out", str(tmp_path / "ref")]) == 0
    reference = (tmp_path / "ref" / "vqav2.jsonl").read_text()
    killed = tmp_path / "killed" / "vqav2.jsonl"
    command = [sys.executable, "-m", "llamavid.cli", "eval", "run", "vqav2", *base, "--out", str(killed.parent)]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and (not killed.exists() or killed.read_text().count("\n") < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = killed.read_text().count("\n")
    assert 0 < done < 12, "the run should be killed part-way"
    with open(killed, "a") as handle:  # a half-written line, as a kill during write would leave
        handle.write('{"question_id": 30')
    assert main(["eval", "run", "vqav2", *base, "--out", str(killed.parent)]) == 0
    assert killed.read_text() == reference


def test_data_mistakes_are_one_line_errors(model_dir, tmp_path, capsys):
    data = make("gqa", tmp_path / "gqa")
    (data / "llava_gqa_testdev_balanced.jsonl").unlink()
    assert main(["eval", "run", "gqa", "--model", str(model_dir), "--data", str(data), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "llava_gqa_testdev_balanced.jsonl" in error and "expected layout" in error
    broken = make("msvd-qa", tmp_path / "msvd")
    (broken / "test_qa.json").write_text("[{")
    assert main(["eval", "run", "msvd-qa", "--model", str(model_dir), "--data", str(broken), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "test_qa.json is not valid JSON" in error
    (broken / "test_qa.json").write_text('[{"video_id": "nope", "question": "q", "id": 0, "answer": "a"}]')
    assert main(["eval", "run", "msvd-qa", "--model", str(model_dir), "--data", str(broken), "--out", str(tmp_path)]) == 2
    assert "missing video nope" in capsys.readouterr().err
    assert main(["eval", "score", "gqa", "--answers", str(tmp_path / "none.jsonl"), "--data", str(data)]) == 2
    assert "missing answers file" in capsys.readouterr().err
    assert main(["eval", "score", "msvd-qa", "--answers", str(broken / "test_qa.json")]) == 2
    assert "--judge-base-url" in capsys.readouterr().err
