"""Scoring rules on tricky predictions; every expectation is derived by hand from the official rule quoted."""

from __future__ import annotations

import json

import pytest

from llamavid.eval import (
    BENCHMARK_NAMES,
    ScoreSettings,
    benchmarks,
    gqa,
    mmbench,
    mme,
    pope,
    scienceqa,
    seed,
    vizwiz,
    vqav2,
)
from llamavid.eval.video import VCG_ASPECT_NAMES, scored_benchmark
from llamavid.eval.vqa_text import normalize_answer, soft_accuracy

from .benchdata import make


def rows(pairs):
    return [{"question_id": qid, "text": text} for qid, text in pairs]


# -- EvalAI normalisation (VQAv2 / VizWiz converters) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Two.", "2"),  # period not before a digit deleted; number word -> digit
        ("The Dog", "dog"),  # lower-case; article dropped
        ("1.5", "1.5"),  # a period before a digit stays
        ("yes, it is", "yes it is"),  # commas deleted outright
        ("red-white", "red white"),  # "-" not next to a space -> replaced by a space
        ("a - b", "b"),  # "-" next to a space -> deleted; "a" is an article
        ("dont know", "don't know"),  # contraction table
        ("None", "0"),  # "none" is a number word
        ("It's blue?", "it 's blue"),  # "'s" -> " 's"; "?" deleted
        ("line\nbreak", "line break"),  # newline -> space
        ("somebody'd", "somebodyd"),  # the official table maps this one backwards
    ],
)
def test_evalai_normalisation(raw, expected):
    assert normalize_answer(raw) == expected


def test_period_deletion_is_capped_at_32():
    # re.UNICODE (32) is passed as `count`: only the first 32 periods go
    assert normalize_answer("." * 40 + "x") == "." * 8 + "x"


def test_soft_accuracy():
    # 2 of 10 humans said "2": each leave-one-out subset has 1 or 2 matches -> (8 * 2/3 + 2 * 1/3) / 10 = 0.6
    humans = ["2", "two"] + ["3"] * 8
    assert soft_accuracy("2", humans) == pytest.approx(0.6)
    # 3 matches: subsets leaving out a match see 2 (2/3), the others 3 (1) -> (3 * 2/3 + 7) / 10 = 0.9
    assert soft_accuracy("3", ["3"] * 3 + ["4"] * 7) == pytest.approx(0.9)
    assert soft_accuracy("5", ["3"] * 10) == 0.0


# -- GQA -----------------------------------------------------------------------------------------------------


def test_gqa(tmp_path):
    data = make("gqa", tmp_path)
    # truth: 200 verify "no", 201 query "blue", 202 logical "yes"
    predictions = rows([("200", "No."), (201, "Blue ."), ("202", "YES")])
    result = gqa.score(data, predictions)
    # "No." -> rstrip(".").lower() -> "no": right; "Blue ." -> "blue " (space kept): wrong; "YES" -> "yes": right;
    # ids match as numbers or strings; binary = verify + logical, open = query
    assert result["accuracy"] == pytest.approx(200 / 3)
    assert result["binary"] == 100.0
    assert result["open"] == 0.0
    assert result["missing"] == 0


def test_gqa_missing_counts_wrong(tmp_path):
    data = make("gqa", tmp_path)
    result = gqa.score(data, rows([("200", "no")]))
    assert result["accuracy"] == pytest.approx(100 / 3)  # 1 right of 3, the two missing in the denominator
    assert result["missing"] == 2


# -- POPE ----------------------------------------------------------------------------------------------------


def test_pope_parse():
    assert pope.parse("No, there is not.") == "no"  # "No" token
    assert pope.parse("Yes. But no dog.") == "yes"  # only the first sentence counts
    assert pope.parse("There is not a dog") == "no"  # "not" token
    assert pope.parse("NO") == "yes"  # only "No", "no", "not" count
    assert pope.parse("Not at all") == "yes"  # "Not" is not in the list
    assert pope.parse("no,") == "no"  # commas removed before splitting
    assert pope.parse("") == "yes"


def test_pope(tmp_path):
    data = make("pope", tmp_path)
    # per category: first question label yes, second no (ids 0..5)
    predictions = rows([(0, "Yes"), (1, "No"), (2, "Yes"), (3, "Yes"), (4, "No")])  # 5 missing
    result = pope.score(data, predictions)
    category = {
        name: {metric: result[f"{metric}_per_category"][name] for metric in ("precision", "recall", "f1", "yes_ratio")}
        | {"accuracy": result["per_category"][name]}
        for name in ("adversarial", "popular", "random")
    }
    adversarial, popular, random_ = category.values()
    assert adversarial == {"accuracy": 100.0, "precision": 100.0, "recall": 100.0, "f1": 100.0, "yes_ratio": 50.0}
    # popular: TP=1, FP=1 -> precision 50, recall 100, f1 2/3, yes ratio 100
    assert popular["accuracy"] == 50.0 and popular["precision"] == 50.0 and popular["yes_ratio"] == 100.0
    assert popular["f1"] == pytest.approx(200 / 3)
    # random: "No" for the yes-label (FN) and the missing no-label one counted as a wrong "yes" (FP): all wrong
    assert random_["accuracy"] == 0.0 and random_["f1"] == 0.0
    assert result["missing"] == 1
    assert result["accuracy"] == pytest.approx(50.0)


# -- MME -----------------------------------------------------------------------------------------------------


def test_mme_parse():
    assert mme.parse("Yes") == "yes"
    assert mme.parse("Yes, there is.") == "yes"  # "yes" in the first 4 characters
    assert mme.parse("Not sure") == "no"  # "no" in "not "
    assert mme.parse("I think yes") == "other"  # neither in "i th"
    assert mme.parse("") == "other"


def test_mme(tmp_path):
    data = make("mme", tmp_path)
    qa = [json.loads(line) for line in (data / "llava_mme.jsonl").read_text().splitlines()]
    # existence: dog -> Yes, cat -> No; code_reasoning (double-space ground truth): 3 -> yes, 4 -> no
    texts = ["Yes", "no", "Yes", "maybe"]
    predictions = [{"question_id": q["question_id"], "prompt": q["text"], "text": t} for q, t in zip(qa, texts, strict=True)]
    result = mme.score(data, predictions)
    assert result["per_task"]["existence"] == 200.0  # acc 100 + acc+ 100
    assert result["per_task"]["code_reasoning"] == 50.0  # acc 50 + acc+ 0 ("maybe" is "other")
    assert result["perception"] == 200.0 and result["cognition"] == 50.0


# -- SEED ----------------------------------------------------------------------------------------------------


def test_seed(tmp_path):
    data = make("seed", tmp_path)
    # answers: 100 A (image), 101 B (image), 102 C (video); exact equality with the letter
    predictions = rows([(100, "A"), ("101", "B."), ("102", "C")])
    result = seed.score(data, predictions, ScoreSettings(submission=str(tmp_path / "up.jsonl")))
    assert result["image_accuracy"] == 50.0  # "B." is not "B"
    assert result["video_accuracy"] == 100.0
    assert result["accuracy"] == pytest.approx(200 / 3)  # numeric id 100 matches "100"
    assert [json.loads(x)["prediction"] for x in (tmp_path / "up.jsonl").read_text().splitlines()] == ["A", "B.", "C"]


# -- ScienceQA -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("B. Pacific", "B"),
        ("B.Pacific", "FAILED"),  # needs ". " after the letter
        ("The answer is B.", "B"),
        ("The answer is B", "FAILED"),  # the regex wants one more character after the letter
        ("The answer is A. The answer is B.", "FAILED"),  # two matches
        ("b", "FAILED"),
        ("", "FAILED"),
    ],
)
def test_scienceqa_parse(text, letter):
    assert scienceqa.parse(text) == letter


def test_scienceqa(tmp_path):
    data = make("scienceqa", tmp_path)
    # problem 7 (image, answer index 1 = B), problem 9 (text only, answer A)
    predictions = [
        {"question_id": "7", "prompt": "<image>\nContext...", "text": "B"},
        {"question_id": 9, "prompt": "Which is a mammal?", "text": "E"},  # E is beyond the 3 choices: wrong
    ]
    result = scienceqa.score(data, predictions)
    assert result == {"accuracy": 50.0, "img_accuracy": 100.0, "missing": 0}
    assert scienceqa.score(data, predictions[1:])["img_accuracy"] == 0.0  # missing image problem counts as wrong


# -- VQAv2 / VizWiz ------------------------------------------------------------------------------------------


def test_vqav2_submission_covers_all_test_ids(tmp_path):
    data = make("vqav2", tmp_path)
    target = tmp_path / "upload.json"
    result = vqav2.score(data, rows([(1000, "Two dogs."), (1001, "yes")]), ScoreSettings(submission=str(target)))
    upload = json.loads(target.read_text())
    assert [u["question_id"] for u in upload] == [1000, 1001, 1002, 2000]
    assert upload[0]["answer"] == "2 dogs" and upload[2]["answer"] == ""
    assert result["missing"] == 2


def test_vqav2_local_accuracy(tmp_path):
    (tmp_path / "v2_mscoco_val2014_annotations.json").write_text(json.dumps({"annotations": [
        {"question_id": 1, "answer_type": "number", "answers": [{"answer": "2"}] * 3 + [{"answer": "3"}] * 7},
        {"question_id": 2, "answer_type": "yes/no", "answers": [{"answer": "yes"}] * 10},
    ]}))
    result = vqav2.score(tmp_path, rows([(1, "Two")]), ScoreSettings(submission=None))
    # "Two" -> "2": 3 human matches -> 0.9; question 2 missing -> 0
    assert result["accuracy"] == pytest.approx(45.0)
    assert result["per_answer_type"] == {"number": pytest.approx(90.0), "yes/no": 0.0}
    assert result["missing"] == 1


def test_vizwiz_submission_and_val(tmp_path):
    data = make("vizwiz", tmp_path)
    target = tmp_path / "vizwiz.json"
    result = vizwiz.score(data, rows([(0, "Unanswerable"), (1, "A can of soup.")]), ScoreSettings(submission=str(target)))
    upload = json.loads(target.read_text())
    assert upload[0] == {"image": "VizWiz_test_00000000.jpg", "answer": "unanswerable"}
    assert upload[1]["answer"] == "can of soup" and upload[2]["answer"] == ""
    assert result["missing"] == 1
    val = [{"question_id": i, "image": f"VizWiz_val_{i:08d}.jpg", "text": t} for i, t in enumerate(["Soup", "soup.", "bread"])]
    local = vizwiz.score(data, val, ScoreSettings(submission=None))
    assert local["accuracy"] == pytest.approx(200 / 3)


# -- MMBench -------------------------------------------------------------------------------------------------


def test_mmbench_prompt_and_options(tmp_path):
    data = make("mmbench", tmp_path)
    items = mmbench.load(data)
    # hint + "\n" + question + "\nA. ..." ; options stop at the first empty one ("" and "None" count as empty)
    assert items[0].requests[0].qformer == "A photo.\nWhat is shown?\nA. cat\nB. dog"
    assert items[0].requests[0].prompt.endswith("B. dog\nAnswer with the option's letter from the given choices directly.")
    assert items[2].record["options"] == ["red", "green", "blue"]
    assert items[2].requests[0].qformer.startswith("Which colour?")  # hint "nan" is no hint


def test_mmbench_circular(tmp_path):
    data = make("mmbench", tmp_path)
    target = tmp_path / "up.xlsx"
    # question 0 twice (rotated; answers A then B) and question 1 (answer C)
    result = mmbench.score(data, rows([(0, "A"), (1000000, "(B) cat"), (1, "blue")]), ScoreSettings(split=None, submission=str(target)))
    assert result["accuracy"] == 100.0  # both rotations right; "blue" is the text of option C
    result = mmbench.score(data, rows([(0, "A"), (1000000, "A"), (1, "C")]), ScoreSettings(split=None, submission=str(target)))
    assert result["accuracy"] == 50.0  # one rotation wrong -> the whole question wrong
    import zipfile

    sheet = zipfile.ZipFile(target).read("xl/worksheets/sheet1.xml").decode()
    assert "<t xml:space=\"preserve\">prediction</t>" in sheet and "hint" not in sheet


def test_one_table_names_every_benchmark_in_the_papers_order():
    table = benchmarks()
    assert tuple(table) == BENCHMARK_NAMES and BENCHMARK_NAMES[:2] == ("vqav2", "gqa")
    assert all(bench.name == name for name, bench in table.items())


def test_a_vcgbench_aspect_name_scores_that_aspect_of_vcgbench():
    assert scored_benchmark("vcgbench-temporal") == ("vcgbench", ["temporal"])
    assert scored_benchmark("vcgbench") == ("vcgbench", None)
    assert scored_benchmark("gqa") == ("gqa", None)
    assert len(VCG_ASPECT_NAMES) == 5 and "vcgbench-consistency" in VCG_ASPECT_NAMES


def test_score_flags_come_from_the_settings_fields(capsys):
    from llamavid.cli import main

    with pytest.raises(SystemExit):
        main(["eval", "score", "--help"])
    shown = capsys.readouterr().out
    for flag in ("--split", "--submission", "--judge-prompts", "--fix-consistency-question", "--judge-model"):
        assert flag in shown
