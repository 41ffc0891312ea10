"""The judge against a loopback OpenAI-compatible double: parsing, retries, failures, cache, aggregation."""

from __future__ import annotations

import pytest

from llamavid.eval.base import ScoreSettings
from llamavid.eval.judge import Judge, JudgeError, JudgeSettings, MalformedReply, parse_reply
from llamavid.eval.video import score_qa, score_vcgbench

from .judge_server import JudgeDouble

QA_ROWS = [
    {"id": 0, "question": "what moves?", "answer": "dot", "pred": "a dot"},
    {"id": 0, "question": "who is there?", "answer": "man", "pred": "a woman"},
    {"id": 1, "question": "what colour?", "answer": "red", "pred": "maybe"},
]


def judge(double, tmp_path, **overrides):
    settings = JudgeSettings(base_url=double.base_url, model="judge-x", cache_dir=tmp_path / "cache", backoff_s=0.0, **overrides)
    return Judge(settings, sleep=lambda s: None)


def options(judge_, **extra):
    return ScoreSettings(judge=judge_, **extra)


def verdicts(user, attempt):
    if "Predicted Answer: a dot" in user:
        return 200, "{'pred': 'yes', 'score': 4.8}"  # float score: int() truncates to 4
    if "Predicted Answer: a woman" in user:
        return 200, "{'pred': 'no', 'score': 1}"
    return 200, "{'pred': 'unclear', 'score': '3'}"  # neither yes nor no: left out of accuracy


def test_parse_reply():
    assert parse_reply(" {'pred': 'yes', 'score': 4} ", need_pred=True) == {"pred": "yes", "score": 4}
    with pytest.raises(MalformedReply):
        parse_reply("The answer is yes", need_pred=True)
    with pytest.raises(MalformedReply):
        parse_reply("{'score': 'high'}", need_pred=False)
    with pytest.raises(MalformedReply):
        parse_reply("{'score': 3}", need_pred=True)


def test_qa_aggregation_and_cache(tmp_path):
    with JudgeDouble(verdicts) as double:
        first = judge(double, tmp_path)
        result = score_qa(None, QA_ROWS, options(first))
        # yes=1, no=1 ("unclear" counts in neither): accuracy 50; scores int(4.8)=4, 1, int("3")=3 -> 8/3
        assert result["accuracy"] == 50.0
        assert result["average_score"] == pytest.approx(8 / 3)
        assert result["judge_failures"] == 0
        assert all(request["temperature"] == 0 for request in double.requests)
        sent = len(double.requests)
        again = judge(double, tmp_path)
        assert score_qa(None, QA_ROWS, options(again)) == result
        assert len(double.requests) == sent and again.cache_hits == 3  # a rerun costs nothing


def test_retries_on_malformed_and_429_then_failure(tmp_path):
    def flaky(user, attempt):
        if "a dot" in user:
            return (429, "") if attempt == 1 else (200, "{'pred': 'yes', 'score': 5}")
        if "a woman" in user:
            return (200, "Sure! {'pred': 'no'}") if attempt < 3 else (200, "{'pred': 'no', 'score': 0}")
        if "maybe" in user:
            return (503, "busy") if attempt % 2 else (200, "not a dict")  # never well-formed
        raise AssertionError(user)

    with JudgeDouble(flaky) as double:
        result = score_qa(None, QA_ROWS, options(judge(double, tmp_path, max_retries=3, concurrency=2)))
        assert result["judge_failures"] == 1
        assert result["accuracy"] == 50.0 and result["average_score"] == 2.5
        assert double.attempts.most_common(1)[0][1] == 4  # 1 try + 3 retries for the hopeless one, then stop


def test_client_error_stops_with_one_line(tmp_path):
    with JudgeDouble(lambda user, attempt: (401, "no key")) as double, pytest.raises(JudgeError, match="HTTP 401"):
        score_qa(None, QA_ROWS[:1], options(judge(double, tmp_path)))


def test_vcgbench_consistency_bug_behind_a_flag(tmp_path):
    rows = [
        {"video_name": "v", "Q": "q", "A": "a", "pred": "p", "set": "generic"},
        {"video_name": "v", "Q": "t", "A": "a", "pred": "p", "set": "temporal"},
        {"video_name": "v", "Q1": "first?", "Q2": "second?", "A": "a", "pred1": "x", "pred2": "y"},
    ]
    with JudgeDouble(lambda user, attempt: (200, "{'score': 3.9}")) as double:
        result = score_vcgbench(None, rows, options(judge(double, tmp_path)))
        assert result["per_aspect"] == dict.fromkeys(("correctness", "detail", "context", "temporal", "consistency"), 3)
        assert result["judged"] == 5 and result["judge_failures"] == 0
        consistency = [r for r in double.requests if "Question 1:" in r["messages"][-1]["content"]]
        assert "Question 2: first?" in consistency[0]["messages"][-1]["content"]  # the original's bug, kept by default
        score_vcgbench(None, rows, options(judge(double, tmp_path), fix_consistency_question=True, aspects=["consistency"]))
        assert "Question 2: second?" in double.requests[-1]["messages"][-1]["content"]


def test_judge_prompts_file(tmp_path):
    custom = tmp_path / "prompts.json"
    custom.write_text('{"qa": {"system": "S", "user": "Q={question} A={answer} P={pred} {\'pred\': \'yes\'}"}}')
    with JudgeDouble(lambda user, attempt: (200, "{'pred': 'yes', 'score': 5}")) as double:
        score_qa(None, QA_ROWS[:1], ScoreSettings(judge=judge(double, tmp_path), judge_prompts=custom))
        assert double.requests[0]["messages"] == [
            {"role": "system", "content": "S"},
            {"role": "user", "content": "Q=what moves? A=dot P=a dot {'pred': 'yes'}"},
        ]
