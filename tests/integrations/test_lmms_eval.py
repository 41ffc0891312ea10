"""lmms-eval runs llamavid: local task YAMLs (images, videos encoded at two frame rates, text only, several images in
one question, a multiple-choice task ranked by log-likelihood) evaluated offline through the `lmms_eval.models`
entry point, with answers equal to `ChatEngine`'s on the same prompts and media. Runs in the environment that
`scripts/lmms_eval_env.sh` makes (CI has a step for it); skipped where lmms-eval is not installed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from llamavid.inference.engine import ChatEngine
from llamavid.inference.generation import GenerationSettings
from llamavid.testing import save_model_folder, write_test_video

lmms_eval = pytest.importorskip("lmms_eval")

MAX_NEW_TOKENS = 6
QUESTION_SUFFIX = "\nAnswer with one word."

UTILS = '''
from PIL import Image


def doc_to_visual(doc):
    if doc.get("video"):
        return [doc["video"]]
    return [Image.open(path).convert("RGB") for path in doc.get("images", [])]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"] + "{suffix}"
'''


def _task(name: str, data: Path, output_type: str = "generate_until", extra: str = "") -> str:
    generation = textwrap.dedent(f"""\
        generation_kwargs:
          max_new_tokens: {MAX_NEW_TOKENS}
          temperature: 0
          do_sample: false
          until: ["\\n\\n"]
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
            ignore_case: true
            ignore_punctuation: true
        """)
    choice = textwrap.dedent("""\
        doc_to_choice: ["yes", "no", "maybe"]
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
        """)
    return textwrap.dedent(f"""\
        task: {name}
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data}
        test_split: test
        output_type: {output_type}
        doc_to_visual: !function utils.doc_to_visual
        doc_to_text: !function utils.doc_to_text
        doc_to_target: answer
        """) + (generation if output_type == "generate_until" else choice) + extra


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """(task folder, {task: docs}): local JSONL tasks over media made here."""
    root = tmp_path_factory.mktemp("lmms")
    rng = np.random.default_rng(0)
    images = []
    for index in range(3):
        path = root / f"image{index}.png"
        Image.fromarray(rng.integers(0, 256, (30 + 6 * index, 40, 3), dtype=np.uint8)).save(path)
        images.append(str(path))
    videos = [
        str(write_test_video(root / "slow.mp4", seconds=3, fps=10)),
        str(write_test_video(root / "fast.mp4", seconds=2, fps=25)),
    ]
    docs = {
        "ci_image_qa": [
            {"question": "What colour is it?", "images": [images[0]], "answer": "red"},
            {"question": "Is it noisy?", "images": [images[1]], "answer": "yes"},
            {"question": "Which picture is taller?", "images": [images[1], images[2]], "answer": "second"},
            {"question": "What is the capital of France?", "images": [], "answer": "paris"},
        ],
        "ci_video_qa": [
            {"question": "Where does the bar move?", "video": videos[0], "answer": "right"},
            {"question": "Does it get brighter?", "video": videos[1], "answer": "yes"},
        ],
        "ci_choice": [
            {"question": "Is it an image?", "images": [images[0]], "answer": 0},
            {"question": "Is the video long?", "video": videos[0], "answer": 1},
        ],
    }
    for name, rows in docs.items():
        data = root / f"{name}.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        kind = "multiple_choice" if name == "ci_choice" else "generate_until"
        (root / f"{name}.yaml").write_text(_task(name, data, kind))
    (root / "utils.py").write_text(UTILS.replace("{suffix}", QUESTION_SUFFIX.replace("\n", "\\n")))
    return root, docs


@pytest.fixture
def offline(tmp_path, monkeypatch):
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: any hub call fails loudly


def _visual(doc):
    if doc.get("video"):
        return doc["video"]
    images = [Image.open(path).convert("RGB") for path in doc.get("images", [])]
    return images


def _expected(tiny, doc) -> str:
    """ChatEngine's answer to the same prompt and media, cut at the task's stop string."""
    model, processor = tiny
    engine = ChatEngine(model, processor, fps=1.0, decode_at_model_size=False)
    question = doc["question"] + QUESTION_SUFFIX
    settings = GenerationSettings(max_new_tokens=MAX_NEW_TOKENS)
    visual = _visual(doc)
    if isinstance(visual, list) and len(visual) != 1:
        from llamavid.inference.inputs import Turn, build_sample

        turn = Turn("user", question, [engine.encode_media(image) for image in visual])
        sample = build_sample(processor, [turn])
        text = engine.answer_batch([sample], settings)[0]
    else:
        media = visual[0] if isinstance(visual, list) else visual
        text = "".join(engine.chat([("user", question)], media=media, settings=settings))
    return text.split("\n\n")[0].strip()


def _evaluate(folder, task_dir, tasks, **kwargs):
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    return simple_evaluate(
        model="llamavid",
        model_args=f"pretrained={folder},device=cpu,dtype=float32",
        tasks=tasks,
        task_manager=TaskManager(include_path=str(task_dir)),
        log_samples=True,
        **kwargs,
    )


def _responses(results, task) -> list[str]:
    samples = sorted(results["samples"][task], key=lambda s: s["doc_id"])
    return [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"] for s in samples]


@pytest.mark.parametrize("force_simple", [False, True], ids=["chat", "simple"])
def test_generation_tasks_answer_as_the_engine_does(tiny, tiny_folder, tasks, offline, force_simple):
    task_dir, docs = tasks
    results = _evaluate(tiny_folder, task_dir, ["ci_image_qa", "ci_video_qa"], force_simple=force_simple)
    for task in ("ci_image_qa", "ci_video_qa"):
        assert "exact_match,none" in results["results"][task]
        assert _responses(results, task) == [_expected(tiny, doc) for doc in docs[task]], task


def test_batched_requests_answer_as_one_by_one(tiny, tiny_folder, tasks, offline):
    task_dir, docs = tasks
    results = _evaluate(tiny_folder, task_dir, ["ci_image_qa"], batch_size=4, force_simple=True)
    assert _responses(results, "ci_image_qa") == [_expected(tiny, doc) for doc in docs["ci_image_qa"]]


def _choice_nll(model, inputs, ids: list[int]) -> tuple[float, bool]:
    """-log P(ids | prompt) and whether greedy decoding gives them, one generate step per token."""
    total, greedy = 0.0, True
    input_ids, mask = inputs["input_ids"], inputs["attention_mask"]
    for token in ids:
        step = {**inputs, "input_ids": input_ids, "attention_mask": mask}
        with torch.inference_mode():
            out = model.generate(**step, max_new_tokens=1, do_sample=False, output_scores=True,
                                 return_dict_in_generate=True)
        logprobs = torch.log_softmax(out.scores[0][0].float(), dim=-1)
        total -= logprobs[token].item()
        greedy &= int(logprobs.argmax()) == token
        input_ids = torch.cat([input_ids, torch.tensor([[token]])], dim=1)
        mask = torch.cat([mask, torch.ones(1, 1, dtype=mask.dtype)], dim=1)
    return total, greedy


def test_multiple_choice_ranks_options_by_their_log_likelihood(tiny, tiny_folder, tasks, offline):
    """Each option's value is its negative log-likelihood, computed here token by token through `generate`; the
    chosen option is the most likely one."""
    model, processor = tiny
    task_dir, docs = tasks
    results = _evaluate(tiny_folder, task_dir, ["ci_choice"], force_simple=True)
    engine = ChatEngine(model, processor, fps=1.0, decode_at_model_size=False)
    samples = sorted(results["samples"]["ci_choice"], key=lambda s: s["doc_id"])
    for sample, doc in zip(samples, docs["ci_choice"], strict=True):
        visual = _visual(doc)
        media = visual[0] if isinstance(visual, list) else visual
        inputs = engine.build_inputs([("user", doc["question"] + QUESTION_SUFFIX)], media=media)
        expected = [
            _choice_nll(model, inputs, processor.tokenizer(" " + choice, add_special_tokens=False)["input_ids"])
            for choice in ("yes", "no", "maybe")
        ]
        got = [tuple(resp[0]) for resp in sample["resps"]]
        np.testing.assert_allclose([v for v, _ in got], [v for v, _ in expected], rtol=1e-4, atol=1e-4)
        assert [g for _, g in got] == [g for _, g in expected]
        assert sample["acc"] == float(int(np.argmin([v for v, _ in expected])) == doc["answer"])


def test_the_cli_finds_the_model_through_its_entry_point(tiny_folder, tasks, tmp_path):
    task_dir, _ = tasks
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "llamavid",
         "--model_args", f"pretrained={tiny_folder},device=cpu,max_frames=2",
         "--tasks", "ci_video_qa", "--include_path", str(task_dir), "--output_path", str(out),
         "--log_samples", "--verbosity", "DEBUG"],  # DEBUG: lmms-eval exits 0 on a failed evaluation otherwise
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert list(out.rglob("*_results.json")), result.stderr[-3000:]


def test_unknown_model_args_are_refused_by_name(tiny_folder):
    from llamavid.errors import UsageError
    from llamavid.integrations.lmms_eval_model import LlamaVid

    with pytest.raises(UsageError, match="temprature"):
        LlamaVid(pretrained=str(tiny_folder), device="cpu", temprature=0.2)


def test_two_processes_each_take_a_shard(tiny_folder, tasks, tmp_path):
    """`torchrun`/`accelerate launch` with two CPU processes: each answers half the documents, rank 0 writes all."""
    task_dir, docs = tasks
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    out = tmp_path / "out"
    with socket.socket() as probe:  # a free port for the two processes to meet on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
         "-m", "lmms_eval", "--model", "llamavid", "--model_args", f"pretrained={tiny_folder},device=cpu",
         "--tasks", "ci_image_qa", "--include_path", str(task_dir), "--output_path", str(out),
         "--log_samples", "--verbosity", "DEBUG"],
        capture_output=True, text=True, timeout=300, env=env,
    )
    log = result.stdout + result.stderr  # lmms-eval logs with loguru, to either
    assert result.returncode == 0, log[-3000:]
    per_rank = len(docs["ci_image_qa"]) // 2
    assert log.count(f"number of requests on this rank: {per_rank}") == 2, log[-3000:]
    samples = [json.loads(line) for path in out.rglob("*_samples_ci_image_qa.jsonl") for line in path.open()]
    assert sorted(s["doc_id"] for s in samples) == list(range(len(docs["ci_image_qa"])))


def test_videos_are_sampled_at_the_models_rate(tmp_path):
    """A model whose config samples video at 2 fps is evaluated at 2 fps unless `fps` is in its model_args."""
    from llamavid.integrations.lmms_eval_model import LlamaVid
    from llamavid.testing import tiny_model_and_processor

    model, processor = tiny_model_and_processor(seed=5)
    model.config.video_fps = 2.0
    save_model_folder(model, processor, tmp_path / "two-fps")
    video = write_test_video(tmp_path / "clip.mp4", 4, fps=10)
    assert LlamaVid(pretrained=str(tmp_path / "two-fps"), device="cpu").engine.encode_media(video).num_frames == 8
    assert LlamaVid(pretrained=str(tmp_path / "two-fps"), device="cpu", fps=1).engine.encode_media(video).num_frames == 4
