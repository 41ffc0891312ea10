"""Video benchmarks: MSVD-QA, MSRVTT-QA, ActivityNet-QA (judged yes/no + score) and the Video-ChatGPT benchmark
(VCGBench: five judged aspects).

Inference as the original scripts: frames at the model's `video_fps` (1 for the releases, as the original's),
"<image>\\n" + question in one vicuna_v1 turn, the raw question as Q-Former prompt (each of Q1/Q2 on its own for
the consistency set), 1024 new tokens, sampling at temperature 0.2 unless `--greedy`. A missing video stops the run
with its name (the original silently reuses the previous video). Prediction rows keep the original's fields
(`id`/`question`/`answer`/`pred`; VCGBench entries + `pred` or `pred1`/`pred2`) so the original judge scripts read
them too, plus LLaVA's answer fields.

Aggregation as the original: the judge's `score` truncated with int() and averaged; QA accuracy = #replies whose
`pred` contains "yes" / (#yes + #no), "yes" tested first as a substring, so replies with neither are left out of
both counts. Items the judge never answered properly are reported in `judge_failures` and left out.
"""

from __future__ import annotations

from pathlib import Path

from .base import Benchmark, GenerationDefaults, Item, Media, Request, ScoreSettings, answer_id
from .data import EvalDataError, find_video, read_json, require_keys
from .prompts import load_prompts, messages

VIDEO_GENERATION = GenerationDefaults(max_new_tokens=1024, temperature=0.2)
MSVD_LAYOUT = "<bench>/test_qa.json ([{video_id, question, id, answer}]) and videos in <bench>/videos/<video_id>.mp4|avi|mov|mkv"
ANET_LAYOUT = (
    "activitynet-qa/test_q.json ([{video_name, question_id, question}]), test_a.json (answers in the same order), "
    "videos in activitynet-qa/all_test/v_<video_name>.mp4|avi|mov|mkv"
)
VCG_LAYOUT = (
    "video-chatgpt/generic_qa.json, temporal_qa.json, consistency_qa.json and videos in "
    "video-chatgpt/Test_Videos/<video_name>.mp4|avi|mov|mkv"
)
VCG_ASPECTS = {
    "correctness": "generic",
    "detail": "generic",
    "context": "generic",
    "temporal": "temporal",
    "consistency": "consistency",
}
# `llamavid eval score vcgbench-<aspect>` scores one aspect of the Video-ChatGPT benchmark, as the original's five
# evaluate_benchmark_* scripts do (each reads its own answers file)
VCG_ASPECT_NAMES = tuple(f"vcgbench-{aspect}" for aspect in VCG_ASPECTS)


def scored_benchmark(name: str) -> tuple[str, list[str] | None]:
    """The benchmark a score name belongs to and the aspects it scores: `vcgbench-temporal` -> (`vcgbench`,
    [`temporal`]); any other name scores its whole benchmark (None)."""
    if name in VCG_ASPECT_NAMES:
        return "vcgbench", [name.split("-", 1)[1]]
    return name, None


def _default_set(aspects: list[str] | None) -> str:
    """The question set of rows that do not say theirs: a temporal-only answers file holds temporal questions."""
    return "temporal" if aspects == ["temporal"] else "generic"


def _video_item(qid, path: Path, questions: list[str], record: dict) -> Item:
    requests = [Request("<image>\n" + question, question) for question in questions]
    return Item(qid, requests, Media("video", str(path)), record)


def load_msvd(data: Path, split: str | None = None) -> list[Item]:
    path = Path(data) / "test_qa.json"
    items = []
    for index, entry in enumerate(read_json(path, MSVD_LAYOUT)):
        require_keys(entry, ("video_id", "question", "id", "answer"), path, MSVD_LAYOUT)
        video = find_video(Path(data), str(entry["video_id"]), ("videos", "video", "."), MSVD_LAYOUT)
        record = {"id": entry["id"], "question": entry["question"], "answer": entry["answer"]}
        items.append(_video_item(index, video, [entry["question"]], record))
    return items


def load_activitynet(data: Path, split: str | None = None) -> list[Item]:
    questions = read_json(Path(data) / "test_q.json", ANET_LAYOUT)
    answers = read_json(Path(data) / "test_a.json", ANET_LAYOUT)
    if len(questions) != len(answers):
        raise EvalDataError(f"test_q.json has {len(questions)} entries but test_a.json {len(answers)}; they pair by position")
    items = []
    for index, (question, answer) in enumerate(zip(questions, answers, strict=True)):
        require_keys(question, ("video_name", "question"), Path(data) / "test_q.json", ANET_LAYOUT)
        video = find_video(Path(data), f"v_{question['video_name']}", ("all_test", "videos", "."), ANET_LAYOUT)
        record = {
            "id": question.get("question_id", index),
            "question": question["question"],
            "answer": answer["answer"],
        }
        items.append(_video_item(index, video, [question["question"]], record))
    return items


def load_vcgbench(data: Path, split: str | None = None) -> list[Item]:
    items = []
    for name in ("generic", "temporal", "consistency"):
        path = Path(data) / f"{name}_qa.json"
        keys = ("video_name", "Q1", "Q2", "A") if name == "consistency" else ("video_name", "Q", "A")
        for index, entry in enumerate(read_json(path, VCG_LAYOUT)):
            require_keys(entry, keys, path, VCG_LAYOUT)
            video = find_video(Path(data), str(entry["video_name"]), ("Test_Videos", "videos", "."), VCG_LAYOUT)
            questions = [entry["Q1"], entry["Q2"]] if name == "consistency" else [entry["Q"]]
            items.append(_video_item(f"{name}/{index}", video, questions, {**entry, "set": name}))
    return items


def video_row(item: Item, texts: list[str], model_id: str) -> dict:
    row = {"question_id": item.qid, **item.record}
    if len(texts) == 1:
        row["pred"] = texts[0]
    else:
        for number, text in enumerate(texts, 1):
            row[f"pred{number}"] = text
    prompt = "\n".join(request.qformer for request in item.requests)
    row["prompt"] = prompt
    row["text"] = texts[0] if len(texts) == 1 else texts
    row["answer_id"] = answer_id(item.qid, prompt, "\n".join(texts), model_id)
    row["model_id"] = model_id
    row["metadata"] = {}
    return row


# -- scoring ------------------------------------------------------------------------------------------------


def _judge_from(settings: ScoreSettings | None):
    judge = settings.judge if settings is not None else None
    if judge is None:
        raise EvalDataError("scoring a video benchmark needs a judge: give --judge-base-url and --judge-model")
    return judge


def score_qa(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    judge = _judge_from(settings)
    prompt = load_prompts(settings.judge_prompts)["qa"]
    conversations = []
    for row in predictions:
        for key in ("question", "answer", "pred"):
            if key not in row:
                raise EvalDataError(f"a prediction row lacks '{key}'; expected rows with id, question, answer, pred")
        conversations.append(messages(prompt, question=row["question"], answer=row["answer"], pred=row["pred"]))
    replies = judge.ask_all(conversations, need_pred=True, progress=settings.progress)
    judged = [reply for reply in replies if reply is not None]
    yes = no = 0
    for reply in judged:
        verdict = reply["pred"].lower()
        if "yes" in verdict:
            yes += 1
        elif "no" in verdict:
            no += 1
    return {
        "accuracy": 100.0 * yes / (yes + no) if yes + no else 0.0,
        "average_score": sum(int(reply["score"]) for reply in judged) / len(judged) if judged else 0.0,
        "yes": yes,
        "no": no,
        "judged": len(judged),
        "judge_failures": len(replies) - len(judged),
    }


def vcg_set(row: dict, default: str) -> str:
    if "pred1" in row or "Q1" in row:
        return "consistency"
    return row.get("set", default)


def score_vcg_aspect(
    aspect: str, predictions: list[dict], settings: ScoreSettings, prompts: dict, default_set: str = "generic"
) -> dict:
    judge = _judge_from(settings)
    prompt = prompts[aspect]
    wanted = VCG_ASPECTS[aspect]
    rows = [row for row in predictions if vcg_set(row, default_set) == wanted]
    conversations = []
    for row in rows:
        if aspect == "consistency":
            # the original shows the judge Q1 twice; `--fix-consistency-question` shows Q2 as the second question
            second = row["Q2"] if settings.fix_consistency_question else row["Q1"]
            conversations.append(
                messages(prompt, question1=row["Q1"], question2=second, answer=row["A"], pred1=row["pred1"], pred2=row["pred2"])
            )
        else:
            conversations.append(messages(prompt, question=row["Q"], answer=row["A"], pred=row["pred"]))
    replies = judge.ask_all(conversations, need_pred=False, progress=settings.progress)
    judged = [reply for reply in replies if reply is not None]
    return {
        "score": sum(int(reply["score"]) for reply in judged) / len(judged) if judged else 0.0,
        "judged": len(judged),
        "judge_failures": len(replies) - len(judged),
    }


def score_vcgbench(data: Path | None, predictions: list[dict], settings: ScoreSettings | None = None) -> dict:
    _judge_from(settings)
    aspects = settings.aspects or list(VCG_ASPECTS)
    prompts = load_prompts(settings.judge_prompts)
    default_set = _default_set(settings.aspects)
    scored = {aspect: score_vcg_aspect(aspect, predictions, settings, prompts, default_set) for aspect in aspects}
    if len(scored) == 1:
        return next(iter(scored.values()))  # `vcgbench-<aspect>`: flat, like every other benchmark
    return {
        "judged": sum(result["judged"] for result in scored.values()),
        "judge_failures": sum(result["judge_failures"] for result in scored.values()),
        "per_aspect": {aspect: result["score"] for aspect, result in scored.items()},
        "judged_per_aspect": {aspect: result["judged"] for aspect, result in scored.items()},
        "judge_failures_per_aspect": {aspect: result["judge_failures"] for aspect, result in scored.items()},
    }


def _qa_benchmark(name: str, layout: str, load) -> Benchmark:
    return Benchmark(
        name=name, layout=layout, load=load, score=score_qa, generation=VIDEO_GENERATION,
        make_row=video_row, video=True, needs_data_to_score=False,
    )


MSVD = _qa_benchmark("msvd-qa", MSVD_LAYOUT.replace("<bench>", "MSVD-QA"), load_msvd)
MSRVTT = _qa_benchmark("msrvtt-qa", MSVD_LAYOUT.replace("<bench>", "MSRVTT-QA"), load_msvd)
ACTIVITYNET = _qa_benchmark("activitynet-qa", ANET_LAYOUT, load_activitynet)
VCGBENCH = Benchmark(
    name="vcgbench", layout=VCG_LAYOUT, load=load_vcgbench, score=score_vcgbench, generation=VIDEO_GENERATION,
    make_row=video_row, video=True, needs_data_to_score=False,
)
