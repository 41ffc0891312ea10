"""VQA answer normalisation (the EvalAI processor) and the soft VQA accuracy.

LLaVA applies this normalisation in its *submission converters* (VQAv2, VizWiz), not in a scorer, so it decides
what the server sees. Reproduced rule by rule, quirks included:

* lower-case; delete "," and "?"; "'s" -> " 's"; newlines/tabs -> spaces; strip.
* each punctuation mark of `PUNCTUATIONS` is deleted when the text has it next to a space (or has a
  digit-comma-digit run, impossible after the comma deletion), otherwise replaced by a space.
* periods not followed by a digit are deleted, at most 32 of them: the original passes `re.UNICODE` (32) as
  the `count` argument, and its look-behind `(?!<=\\d)` is malformed, so "1.5" keeps its period but "5." loses it.
* number words none/zero..ten -> digits; articles a/an/the dropped; a table of contractions restored.

Soft accuracy: for n human answers, acc(a) = mean over the n leave-one-out subsets of min(1, matches / 3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .base import percent

# Missing-apostrophe spellings -> the spelling in the VQA answers (data of the official evaluator; a few
# entries are odd, e.g. "somebody'd" -> "somebodyd", and are kept because the server uses them).
_CONTRACTION_PAIRS = """
aint ain't|arent aren't|cant can't|couldve could've|couldnt couldn't|couldn'tve couldn't've
couldnt've couldn't've|didnt didn't|doesnt doesn't|dont don't|hadnt hadn't|hadnt've hadn't've
hadn'tve hadn't've|hasnt hasn't|havent haven't|hed he'd|hed've he'd've|he'dve he'd've|hes he's
howd how'd|howll how'll|hows how's|Id've I'd've|I'dve I'd've|Im I'm|Ive I've|isnt isn't|itd it'd
itd've it'd've|it'dve it'd've|itll it'll|let's let's|maam ma'am|mightnt mightn't|mightnt've mightn't've
mightn'tve mightn't've|mightve might've|mustnt mustn't|mustve must've|neednt needn't|notve not've
oclock o'clock|oughtnt oughtn't|ow's'at 'ow's'at|'ows'at 'ow's'at|'ow'sat 'ow's'at|shant shan't
shed've she'd've|she'dve she'd've|she's she's|shouldve should've|shouldnt shouldn't
shouldnt've shouldn't've|shouldn'tve shouldn't've|somebody'd somebodyd|somebodyd've somebody'd've
somebody'dve somebody'd've|somebodyll somebody'll|somebodys somebody's|someoned someone'd
someoned've someone'd've|someone'dve someone'd've|someonell someone'll|someones someone's
somethingd something'd|somethingd've something'd've|something'dve something'd've
somethingll something'll|thats that's|thered there'd|thered've there'd've|there'dve there'd've
therere there're|theres there's|theyd they'd|theyd've they'd've|they'dve they'd've|theyll they'll
theyre they're|theyve they've|twas 'twas|wasnt wasn't|wed've we'd've|we'dve we'd've|weve we've
werent weren't|whatll what'll|whatre what're|whats what's|whatve what've|whens when's|whered where'd
wheres where's|whereve where've|whod who'd|whod've who'd've|who'dve who'd've|wholl who'll|whos who's
whove who've|whyll why'll|whyre why're|whys why's|wont won't|wouldve would've|wouldnt wouldn't
wouldnt've wouldn't've|wouldn'tve wouldn't've|yall y'all|yall'll y'all'll|y'allll y'all'll
yall'd've y'all'd've|y'alld've y'all'd've|y'all'dve y'all'd've|youd you'd|youd've you'd've
you'dve you'd've|youll you'll|youre you're|youve you've
"""
CONTRACTIONS = dict(pair.split(" ") for pair in _CONTRACTION_PAIRS.replace("\n", "|").split("|") if pair)
NUMBERS = {
    word: str(value)
    for value, word in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"))
} | {"none": "0"}
ARTICLES = frozenset({"a", "an", "the"})
PUNCTUATIONS = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"(?<=\d)(,)+(?=\d)")
_PERIOD = re.compile(r"\.(?!\d)")  # what the malformed "(?!<=\d)(\.)(?!\d)" actually matches
_PERIOD_LIMIT = 32  # re.UNICODE passed as `count`


def _punctuation(text: str) -> str:
    out = text
    glued = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCTUATIONS:
        # the test looks at the input text, the replacement acts on the running output (as the original)
        if f"{mark} " in text or f" {mark}" in text or glued:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_LIMIT)


def _digits_and_articles(text: str) -> str:
    words = [NUMBERS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def normalize_answer(text: str) -> str:
    """The EvalAI answer processor applied by LLaVA's VQAv2/VizWiz submission converters."""
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _digits_and_articles(_punctuation(text))


def soft_accuracy(prediction: str, human_answers: list[str]) -> float:
    """VQA accuracy in [0, 1] of a prediction (as the submission converter wrote it) against raw human answers.

    The evaluator runs the answer processor over the submitted answer as well as the human ones, so a converted
    prediction is processed a second time (which matters only where one pass leaves work, e.g. past 32 periods)."""
    prediction = normalize_answer(prediction)
    answers = [normalize_answer(answer) for answer in human_answers]
    if not answers:
        return 0.0
    total = 0.0
    for left_out in range(len(answers)):
        matches = sum(1 for index, answer in enumerate(answers) if index != left_out and answer == prediction)
        total += min(1.0, matches / 3)
    return total / len(answers)


def accuracy_report(questions: Iterable[tuple[str, str | None, list[str]]]) -> dict:
    """Percent soft accuracy over (answer type, converted prediction or None if unanswered, human answers).

    Every question is in the denominators: an unanswered one scores 0 and counts in `missing`."""
    total, count, answered, by_type = 0.0, 0, 0, {}
    for kind, prediction, humans in questions:
        value = 0.0 if prediction is None else soft_accuracy(prediction, humans)
        answered += prediction is not None
        count += 1
        total += value
        pair = by_type.setdefault(kind, [0.0, 0])
        pair[0] += value
        pair[1] += 1
    return {
        "accuracy": percent(total, count),
        "per_answer_type": {kind: percent(*pair) for kind, pair in sorted(by_type.items())},
        "answered": answered,
        "missing": count - answered,
    }
