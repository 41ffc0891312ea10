"""Tiny benchmark folders in every official layout (a few items each, real images and encoded videos)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import av
import numpy as np
from PIL import Image


def _image(path: Path, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def _video(path: Path, seed: int, seconds: int = 2, fps: int = 4) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for _ in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


SHORT = "\nAnswer the question using a single word or phrase."


def make_gqa(root: Path) -> Path:
    questions, truth = [], {}
    for i, (q, a, kind) in enumerate([("Is it red?", "no", "verify"), ("What color?", "blue", "query"), ("Any cat?", "yes", "logical")]):
        qid = f"20{i}"
        _image(root / "data/images" / f"n{i}.jpg", i)
        questions.append({"question_id": qid, "image": f"n{i}.jpg", "text": q + SHORT})
        truth[qid] = {"answer": a, "isBalanced": True, "types": {"structural": kind}}
    _jsonl(root / "llava_gqa_testdev_balanced.jsonl", questions)
    _json(root / "data/testdev_balanced_questions.json", truth)
    return root


def make_pope(root: Path) -> Path:
    questions, qid = [], 0
    for category in ("adversarial", "popular", "random"):
        labels = []
        for k, label in enumerate(("yes", "no")):
            _image(root / "val2014" / f"COCO_{category}_{k}.jpg", qid)
            questions.append({"question_id": qid, "image": f"COCO_{category}_{k}.jpg", "text": "Is there a dog in the image?", "category": category})
            labels.append({"question_id": qid, "label": label})
            qid += 1
        _jsonl(root / "coco" / f"coco_pope_{category}.json", labels)
    _jsonl(root / "llava_pope_test.jsonl", questions)
    return root


def make_mme(root: Path) -> Path:
    release = root / "MME_Benchmark_release_version"
    rows = []
    _image(release / "existence" / "000.jpg", 1)
    (release / "existence" / "000.txt").write_text(
        "Is there a dog in this image? Please answer yes or no.\tYes\nIs there a cat in this image? Please answer yes or no.\tNo\n"
    )
    for q in ("Is there a dog in this image?", "Is there a cat in this image?"):
        rows.append({"question_id": "existence/000.jpg", "image": "existence/000.jpg", "text": q + SHORT, "category": "existence"})
    _image(release / "code_reasoning" / "images" / "0020.png", 2)
    (release / "code_reasoning" / "questions_answers_YN").mkdir(parents=True)
    # the official files have a double space before the suffix in some tasks
    (release / "code_reasoning" / "questions_answers_YN" / "0020.txt").write_text(
        "Does the code print 3?  Please answer yes or no.\tyes\nDoes the code print 4?  Please answer yes or no.\tno\n"
    )
    for q in ("Does the code print 3?", "Does the code print 4?"):
        rows.append({"question_id": "code_reasoning/0020.png", "image": "code_reasoning/images/0020.png", "text": q + SHORT, "category": "code_reasoning"})
    # as in the official file, both questions of an image share its question_id
    _jsonl(root / "llava_mme.jsonl", rows)
    return root


def make_seed(root: Path) -> Path:
    questions, llava = [], []
    for i, (kind, answer) in enumerate([("image", "A"), ("image", "B"), ("video", "C")]):
        folder = "SEED-Bench-image" if kind == "image" else "SEED-Bench-video-image"
        _image(root / folder / f"{i}.png", 10 + i)
        llava.append({"question_id": str(100 + i), "image": f"{folder}/{i}.png", "text": "Which?\nA. x\nB. y\nC. z\nAnswer with the option's letter from the given choices directly."})
        questions.append({"question_id": str(100 + i), "question_type_id": 1 if kind == "image" else 10, "data_type": kind, "answer": answer})
    _jsonl(root / "llava-seed-bench.jsonl", llava)
    _json(root / "SEED-Bench.json", {"questions": questions, "question_type": {"Scene Understanding": 1, "Action Recognition": 10}})
    return root


def make_scienceqa(root: Path) -> Path:
    _image(root / "images/test/7/image.png", 20)
    records = [
        {"id": "7", "image": "7/image.png", "conversations": [{"from": "human", "value": "<image>\nContext: a map.\nWhich ocean?\nOptions: (A) Atlantic (B) Pacific"}, {"from": "gpt", "value": "A"}]},
        {"id": "9", "conversations": [{"from": "human", "value": "Which is a mammal?\nOptions: (A) cat (B) fish (C) frog"}, {"from": "gpt", "value": "A"}]},
    ]
    _json(root / "llava_test_CQM-A.json", records)
    _json(root / "problems.json", {"7": {"choices": ["Atlantic", "Pacific"], "answer": 1, "image": "image.png"}, "9": {"choices": ["cat", "fish", "frog"], "answer": 0, "image": None}})
    _json(root / "pid_splits.json", {"test": ["7", "9"]})
    return root


def make_vizwiz(root: Path) -> Path:
    rows, val = [], []
    for i in range(3):
        _image(root / "test" / f"VizWiz_test_{i:08d}.jpg", 30 + i)
        rows.append({"question_id": i, "image": f"VizWiz_test_{i:08d}.jpg", "text": "What is this?\nWhen the provided information is insufficient, respond with 'Unanswerable'." + SHORT})
        _image(root / "val" / f"VizWiz_val_{i:08d}.jpg", 40 + i)
        val.append({"image": f"VizWiz_val_{i:08d}.jpg", "question": "What is this?", "answer_type": "other", "answers": [{"answer": "soup", "answer_confidence": "yes"}] * 10})
    _jsonl(root / "llava_test.jsonl", rows)
    _json(root / "val.json", val)
    return root


def make_vqav2(root: Path) -> Path:
    rows = []
    for i in range(3):
        _image(root / "test2015" / f"COCO_test2015_{i:012d}.jpg", 50 + i)
        rows.append({"question_id": 1000 + i, "image": f"COCO_test2015_{i:012d}.jpg", "text": "What is it?" + SHORT})
    _jsonl(root / "llava_vqav2_mscoco_test-dev2015.jsonl", rows)
    _jsonl(root / "llava_vqav2_mscoco_test2015.jsonl", [*rows, {"question_id": 2000, "image": "x.jpg", "text": "?"}])
    return root


def _b64_image(seed: int) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def make_mmbench(root: Path) -> Path:
    header = ["index", "question", "hint", "A", "B", "C", "D", "answer", "category", "source", "l2-category", "comment", "split", "image"]
    rows = [
        ["0", "What is shown?", "A photo.", "cat", "dog", "", "", "A", "c", "s", "l2", "", "dev", _b64_image(60)],
        ["1000000", "What is shown?", "A photo.", "dog", "cat", "", "", "B", "c", "s", "l2", "", "dev", _b64_image(60)],
        ["1", "Which colour?", "nan", "red", "green", "blue", "None", "C", "c", "s", "l2", "", "dev", _b64_image(61)],
    ]
    root.mkdir(parents=True, exist_ok=True)
    (root / "mmbench_dev_20230712.tsv").write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")
    return root


def make_msvd(root: Path) -> Path:
    _video(root / "videos" / "vidA.mp4", 70)
    _video(root / "videos" / "vidB.avi", 71)
    entries = [
        {"video_id": "vidA", "question": "what is moving?", "id": 0, "answer": "dot"},
        {"video_id": "vidA", "question": "who is there?", "id": 1, "answer": "man"},
        {"video_id": "vidB", "question": "what colour?", "id": 2, "answer": "red"},
    ]
    _json(root / "test_qa.json", entries)
    return root


def make_activitynet(root: Path) -> Path:
    _video(root / "all_test" / "v_abc.mp4", 80)
    _json(root / "test_q.json", [{"video_name": "abc", "question_id": "v_abc_0", "question": "is it day"}, {"video_name": "abc", "question_id": "v_abc_1", "question": "what happens"}])
    _json(root / "test_a.json", [{"answer": "yes", "type": 3}, {"answer": "running", "type": 0}])
    return root


def make_vcgbench(root: Path) -> Path:
    _video(root / "Test_Videos" / "v_1.mp4", 90)
    _json(root / "generic_qa.json", [{"video_name": "v_1", "Q": "Describe the video.", "A": "Dots move."}])
    _json(root / "temporal_qa.json", [{"video_name": "v_1", "Q": "What happens first?", "A": "A dot appears."}])
    _json(root / "consistency_qa.json", [{"video_name": "v_1", "Q1": "What moves?", "Q2": "Which thing moves?", "A": "A dot."}])
    return root


MAKERS = {
    "gqa": make_gqa, "pope": make_pope, "mme": make_mme, "seed": make_seed, "scienceqa": make_scienceqa,
    "vizwiz": make_vizwiz, "vqav2": make_vqav2, "mmbench": make_mmbench, "msvd-qa": make_msvd,
    "msrvtt-qa": make_msvd, "activitynet-qa": make_activitynet, "vcgbench": make_vcgbench,
}


def make(name: str, root: Path) -> Path:
    return MAKERS[name](Path(root))
