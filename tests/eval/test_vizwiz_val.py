"""VizWiz val scored from an answers file in the original LLaVA format (`question_id` = index into val.json,
`text`, no `image`), against figures worked out here from the official rule, not by the code under test."""

from __future__ import annotations

import json

import pytest

from llamavid.cli import main

from .benchdata import make

# Each question: answer type, the model's raw answer (None: not answered), the raw human answers, and by hand
# what the EvalAI processor makes of the answer and of the humans (lower-case, "," "?" deleted, a period not
# before a digit deleted, other punctuation deleted or made a space, number words to digits, articles dropped).
QUESTIONS = [
    # "Two." -> "2"; "two", "2", "Two" -> "2": exactly 3 matching humans
    ("number", "Two.", ["two", "2", "Two"] + ["3"] * 7, "2", ["2"] * 3 + ["3"] * 7),
    # "A red cup." -> "red cup"; "The red cup" -> "red cup", "red-cup" -> "red cup" ("-" glued: a space): 2 match
    ("other", "A red cup.", ["The red cup", "red-cup"] + ["blue mug"] * 8, "red cup", ["red cup"] * 2 + ["blue mug"] * 8),
    # "yes," -> "yes": one matching human
    ("yes/no", "yes,", ["Yes"] + ["no"] * 9, "yes", ["yes"] + ["no"] * 9),
    ("unanswerable", "Unanswerable", ["unanswerable"] * 10, "unanswerable", ["unanswerable"] * 10),
    ("other", None, ["soup"] * 10, None, ["soup"] * 10),  # left unanswered
    # "none" is a number word -> "0"; four humans match, so every leave-one-out subset still has 3
    ("number", "None", ["0", "zero", "Zero.", "0"] + ["1"] * 6, "0", ["0"] * 4 + ["1"] * 6),
]


def official_accuracy(prediction: str, humans: list[str]) -> float:
    """The VQA rule: for each of the 10 ways to leave one human out, min(#matches among the other 9 / 3, 1)."""
    subsets = []
    for left_out in range(len(humans)):
        others = humans[:left_out] + humans[left_out + 1 :]
        subsets.append(min(sum(1 for h in others if h == prediction) / 3, 1.0))
    return sum(subsets) / len(subsets)


def plain_accuracy(prediction: str, humans: list[str]) -> float:
    return min(sum(1 for h in humans if h == prediction) / 3, 1.0)


def expected(rule) -> tuple[float, dict[str, float]]:
    per_question = [(kind, 0.0 if norm is None else rule(norm, humans)) for kind, _, _, norm, humans in QUESTIONS]
    by_type: dict[str, list[float]] = {}
    for kind, value in per_question:
        by_type.setdefault(kind, []).append(value)
    overall = 100 * sum(v for _, v in per_question) / len(per_question)
    return overall, {kind: 100 * sum(values) / len(values) for kind, values in by_type.items()}


def write_val(root):
    root.mkdir(parents=True, exist_ok=True)
    val = [
        {
            "image": f"VizWiz_val_{i:08d}.jpg",
            "question": f"Question {i}?",
            "answers": [{"answer": a, "answer_confidence": "yes"} for a in raw_humans],
            "answer_type": kind,
            "answerable": int(kind != "unanswerable"),
        }
        for i, (kind, _, raw_humans, _, _) in enumerate(QUESTIONS)
    ]
    (root / "val.json").write_text(json.dumps(val))
    return root


def original_answers(path, pairs):
    """LLaVA's `model_vqa_loader` answer lines: no image field."""
    lines = [
        {"question_id": qid, "prompt": "q", "text": text, "answer_id": f"id{qid}", "model_id": "llava", "metadata": {}}
        for qid, text in pairs
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def answered_pairs():
    # out of order, to show answers pair with val.json by index, not by line
    pairs = [(i, raw) for i, (_, raw, _, _, _) in enumerate(QUESTIONS) if raw is not None]
    return pairs[::-1]


def score(capsys, data, answers, *extra) -> dict:
    capsys.readouterr()
    assert main(["eval", "score", "vizwiz", "--data", str(data), "--answers", str(answers), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_worked_figures_follow_the_rule():
    # the hand figures the test rests on: 3 matches 0.9, 2 matches 0.6, 1 match 0.3, 4 or more 1
    assert [round(official_accuracy(q[3], q[4]), 6) for q in QUESTIONS if q[3]] == [0.9, 0.6, 0.3, 1.0, 1.0]
    overall, per_type = expected(official_accuracy)
    assert overall == pytest.approx(100 * (0.9 + 0.6 + 0.3 + 1.0 + 0.0 + 1.0) / 6)
    assert per_type == pytest.approx({"number": 95.0, "other": 30.0, "yes/no": 30.0, "unanswerable": 100.0})


def test_original_format_answers(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    answers = original_answers(tmp_path / "llava_vizwiz_val.jsonl", answered_pairs())
    result = score(capsys, data, answers, "--split", "val")
    overall, per_type = expected(official_accuracy)
    assert result["benchmark"] == "vizwiz"
    assert result["accuracy"] == pytest.approx(overall)
    assert result["per_answer_type"] == pytest.approx(per_type)
    assert result["answered"] == 5 and result["missing"] == 1
    # the leave-one-out average, not a plain min(matches / 3, 1)
    plain_overall, plain_per_type = expected(plain_accuracy)
    assert result["accuracy"] != pytest.approx(plain_overall)
    assert result["per_answer_type"]["number"] != pytest.approx(plain_per_type["number"])


def test_string_ids_and_table_output(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    answers = original_answers(tmp_path / "a.jsonl", [(str(qid), text) for qid, text in answered_pairs()])
    assert score(capsys, data, answers, "--split", "val")["accuracy"] == pytest.approx(expected(official_accuracy)[0])
    assert main(["eval", "score", "vizwiz", "--split", "val", "--data", str(data), "--answers", str(answers)]) == 0
    table = capsys.readouterr().out
    assert "per_answer_type.unanswerable" in table and "missing" in table


def test_our_runner_rows_score_the_same(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    original = score(capsys, data, original_answers(tmp_path / "a.jsonl", answered_pairs()), "--split", "val")
    ours = tmp_path / "vizwiz.jsonl"
    rows = [{"question_id": qid, "prompt": "q", "text": text, "image": f"VizWiz_val_{qid:08d}.jpg"} for qid, text in answered_pairs()]
    ours.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert score(capsys, data, ours, "--split", "val") == original
    # without --split, rows naming their image are val rows (what `eval run --split val` writes)
    assert score(capsys, data, ours) == original


def test_without_split_original_rows_go_to_the_test_upload(tmp_path, capsys):
    data = make("vizwiz", tmp_path / "vizwiz")  # has llava_test.jsonl and val.json
    result = score(capsys, data, original_answers(tmp_path / "a.jsonl", [(0, "soup")]), "--submission", str(tmp_path / "up.json"))
    assert result["submission"] == str(tmp_path / "up.json") and result["missing"] == 2


def error_of(capsys, data, answers, *extra) -> str:
    capsys.readouterr()
    assert main(["eval", "score", "vizwiz", "--split", "val", "--data", str(data), "--answers", str(answers), *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "Traceback" not in error
    return error


@pytest.mark.parametrize("bad_id", [6, -1, "x", 2.5])
def test_an_id_outside_val_json_is_an_error(tmp_path, capsys, bad_id):
    data = write_val(tmp_path / "vizwiz")
    answers = original_answers(tmp_path / "a.jsonl", [(0, "two"), (bad_id, "yes")])
    error = error_of(capsys, data, answers)
    assert "is not an index of" in error and "val.json" in error and "0..5" in error


def test_a_duplicate_id_is_an_error(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    answers = original_answers(tmp_path / "a.jsonl", [(0, "two"), (3, "unanswerable"), (0, "2")])
    assert "question_id 0 is answered twice" in error_of(capsys, data, answers)
    # also across two answers files (shards given separately)
    first = original_answers(tmp_path / "b.jsonl", [(1, "red cup")])
    second = original_answers(tmp_path / "c.jsonl", [(1, "red cup")])
    assert "answered twice" in error_of(capsys, data, first, "--answers", str(second))


def test_rows_for_another_val_json_are_an_error(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    rows = tmp_path / "ours.jsonl"
    rows.write_text(json.dumps({"question_id": 1, "text": "cup", "image": "VizWiz_val_00000007.jpg"}) + "\n")
    assert "is for VizWiz_val_00000007.jpg" in error_of(capsys, data, rows)


def test_missing_files_are_errors(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    assert "missing answers file" in error_of(capsys, data, tmp_path / "none.jsonl")
    answers = original_answers(tmp_path / "a.jsonl", [(0, "two")])
    (data / "val.json").unlink()
    error = error_of(capsys, data, answers)
    assert f"missing {data / 'val.json'}" in error and "expected layout" in error


def test_an_unknown_split_is_an_error(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    answers = original_answers(tmp_path / "a.jsonl", [(0, "two")])
    assert "vizwiz splits are test and val" in error_of(capsys, data, answers, "--split", "train")


def test_val_json_is_found_where_the_official_download_puts_it(tmp_path, capsys):
    data = write_val(tmp_path / "vizwiz")
    (data / "Annotations").mkdir()
    (data / "val.json").rename(data / "Annotations" / "val.json")
    answers = original_answers(tmp_path / "a.jsonl", answered_pairs())
    assert score(capsys, data, answers, "--split", "val")["accuracy"] == pytest.approx(expected(official_accuracy)[0])
