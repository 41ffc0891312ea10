"""Per-template preprocessing of one conversation: LLM ids, labels and Q-Former prompts.

The released weights depend on these details, so they follow the original exactly:

* `<image>` inside a message moves to its front (`<image>\\n` + rest);
* `plain_guided` / `plain` (stage 1): ids = BOS, placeholder, answer tokens, "\\n"; only BOS and the
  placeholder are masked; the question is not shown to the LLM (it is the Q-Former prompt);
* `imgsp_v1` (stages 2-3): every later human turn of a visual sample gets its own `<image>`, at its start or
  end with probability 1/2 (the random generator is passed in, so it is reproducible), and the v1 masking:
  split on `</s>`, BOS masked, each round's instruction masked with the "-2" offset of the legacy LLaMA
  tokenizer; `vicuna_v1` / `llava_v1` use the same masking without the extra placeholders; `llama_2` the
  LLaVA llama-2 variant split on "[/INST] ";
* `chatml` (ours, for SmolLM2; no original to follow): placeholders as `vicuna_v1`; only each answer and the
  `<|im_end|>` closing it train. Labels come from tokenizing the rendered pieces separately, checked
  against the tokenization of the whole text (a mismatch is reported, not guessed around).

Ids here hold ONE placeholder id per `<image>` (the original's `tokenizer_image_token` counting); the collator
expands each into frames x tokens_per_frame after truncation.

Differences with the original: every template yields one Q-Former prompt per placeholder (the prompt of the
human turn holding it, `<image>` and all newlines removed without a space, as in training), where the
original's `vicuna_v1` / `llava_v1` produced none and crashed; and a token-count mismatch is reported in the
result (`mismatch`) so the dataset counts and logs it (or fails) instead of masking silently.
"""

from __future__ import annotations

import random
import re
import weakref
from dataclasses import dataclass, field

from ..model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template
from ..model.processing import tokenize_between_placeholders

IGNORE_INDEX = -100
SUPPORTED_TEMPLATES = (
    "plain", "plain_guided", "imgsp_v1", "vicuna_v1", "llava_v1", "llama_2", "chatml", "chatml_bare"
)


@dataclass
class Preprocessed:
    """One training sample before collation; `input_ids` has one `placeholder_id` per visual placeholder."""

    input_ids: list[int]
    labels: list[int]
    prompts: list[str]
    mismatch: bool = False
    notes: list[str] = field(default_factory=list)


_CHUNK_IDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
CHUNK_CACHE_SIZE = 1 << 16
IMAGE_ONLY = re.compile(re.escape(IMAGE_PLACEHOLDER))


def _chunk_ids(tokenizer, chunk: str) -> list[int]:
    """`tokenizer(chunk).input_ids`, remembered per tokenizer: training data repeats the same template pieces,
    phrasings and answers, and masking tokenizes each round several times."""
    cache = _CHUNK_IDS.setdefault(tokenizer, {})
    ids = cache.get(chunk)
    if ids is None:
        ids = tokenizer(chunk).input_ids
        if len(cache) < CHUNK_CACHE_SIZE:
            cache[chunk] = ids
    return list(ids)


def tokenize_with_placeholders(tokenizer, text: str, placeholder_id: int) -> list[int]:
    """The processor's chunk tokenization around `<image>` (training has turned every `<video>` into one), one
    `placeholder_id` between chunks, each chunk remembered."""
    chunks, _ = tokenize_between_placeholders(tokenizer, text, IMAGE_ONLY, lambda chunk: _chunk_ids(tokenizer, chunk))
    ids = chunks[0]
    for chunk in chunks[1:]:
        ids += [placeholder_id, *chunk]
    return ids


def normalise_placeholders(messages: list[dict]) -> list[dict]:
    """`<video>` (Video-ChatGPT data) is `<image>`, and a placeholder anywhere in a message moves to its front."""
    out = []
    for message in messages:
        value = message["value"].replace(VIDEO_PLACEHOLDER, IMAGE_PLACEHOLDER)
        if IMAGE_PLACEHOLDER in value:
            value = f"{IMAGE_PLACEHOLDER}\n{value.replace(IMAGE_PLACEHOLDER, '').strip()}"
        out.append({"from": message["from"], "value": value})
    return out


def qformer_prompt(text: str) -> str:
    """The training prompt of a human turn: `<image>` and every newline removed, no space inserted, as the original."""
    return text.replace(IMAGE_PLACEHOLDER, "").replace("\n", "").strip()


def _strip_leading_gpt(messages: list[dict]) -> list[dict]:
    return messages[1:] if messages and messages[0]["from"] != "human" else messages


def add_turn_placeholders(messages: list[dict], rng: random.Random) -> list[dict]:
    """imgsp_v1: after the first human turn with `<image>`, every human turn without one gets it at its start
    (`<image>\\n` + text) or end (text + `\\n<image>`), with probability 1/2 each."""
    seen = False
    out = []
    for message in messages:
        value = message["value"]
        if message["from"] == "human":
            if IMAGE_PLACEHOLDER in value:
                seen = True
            elif seen:
                value = (
                    f"{IMAGE_PLACEHOLDER}\n{value}" if rng.random() < 0.5 else f"{value}\n{IMAGE_PLACEHOLDER}"
                )
        out.append({"from": message["from"], "value": value})
    return out


def _prompts(messages: list[dict]) -> list[str]:
    """One Q-Former prompt per placeholder: the prompt of the human turn it sits in."""
    prompts = []
    for message in messages:
        count = message["value"].count(IMAGE_PLACEHOLDER)
        prompts += [qformer_prompt(message["value"])] * count
    return prompts


def preprocess(
    messages: list[dict],
    tokenizer,
    template: str,
    placeholder_id: int,
    has_media: bool,
    rng: random.Random | None = None,
    movie_inputs: str | None = None,
) -> Preprocessed:
    """Ids, labels and prompts for one conversation (list of {"from": "human"|"gpt", "value": str}).

    `movie_inputs` (long-video samples): the interleaved "<image><image>subtitle..." string that
    replaces the placeholder after it moved to the front; the prompt is the message without it.
    """
    if template not in SUPPORTED_TEMPLATES:
        raise ValueError(
            f"Training template {template!r} is not supported; use one of {', '.join(SUPPORTED_TEMPLATES)}"
        )
    messages = _strip_leading_gpt(list(messages))
    if not messages:
        raise ValueError("The conversation has no human turn")
    if has_media:
        messages = normalise_placeholders(messages)
    if template in ("plain", "plain_guided"):
        return _preprocess_plain(messages, tokenizer, placeholder_id)
    if has_media and template == "imgsp_v1" and movie_inputs is None:
        messages = add_turn_placeholders(messages, rng or random.Random(0))
    prompts = _prompts(messages)
    if movie_inputs is not None:
        if len(prompts) != 1:
            raise ValueError("a long-video sample must have exactly one <image>, in one human turn")
        messages = [{**m, "value": m["value"].replace(IMAGE_PLACEHOLDER, movie_inputs)} for m in messages]
    if get_template(template).style == "chatml":
        return _preprocess_chatml(messages, tokenizer, template, placeholder_id, prompts)
    sep = "[/INST] " if template == "llama_2" else None
    return _preprocess_rounds(messages, tokenizer, template, placeholder_id, sep, prompts)


def _preprocess_plain(messages: list[dict], tokenizer, placeholder_id: int) -> Preprocessed:
    """Stage 1: "<image>" + caption + "\\n"; BOS and the placeholder masked; question = Q-Former prompt."""
    if len(messages) != 2:
        raise ValueError(f"plain/plain_guided samples have exactly 2 messages, got {len(messages)}")
    question, answer = messages[0]["value"], messages[1]["value"]
    ids = tokenize_with_placeholders(tokenizer, IMAGE_PLACEHOLDER + answer + "\n", placeholder_id)
    masked = len(tokenize_with_placeholders(tokenizer, IMAGE_PLACEHOLDER, placeholder_id))
    labels = [IGNORE_INDEX] * masked + ids[masked:]
    return Preprocessed(ids, labels, [qformer_prompt(question)])


def _preprocess_rounds(messages, tokenizer, template_name, placeholder_id, sep, prompts) -> Preprocessed:
    """LLaVA's v1 / llama-2 masking on the rendered conversation, counted with `tokenize_with_placeholders`."""
    template = get_template(template_name)
    turns = [("user" if m["from"] == "human" else "assistant", m["value"]) for m in messages]
    text = template.render(turns, add_generation_prompt=False)
    ids = tokenize_with_placeholders(tokenizer, text, placeholder_id)
    labels = list(ids)
    sep = sep or f"{template.sep}{template.roles[1]}: "

    def count(piece: str) -> int:
        return len(tokenize_with_placeholders(tokenizer, piece, placeholder_id))

    cursor = 1
    labels[:cursor] = [IGNORE_INDEX] * cursor
    for round_text in text.split(template.sep2):
        if round_text == "":
            break
        parts = round_text.split(sep)
        if len(parts) != 2:
            break
        round_len = count(round_text)
        instruction_len = count(parts[0] + sep) - 2
        span = slice(cursor, cursor + instruction_len)
        labels[span] = [IGNORE_INDEX] * len(labels[span])
        cursor += round_len
    labels[cursor:] = [IGNORE_INDEX] * len(labels[cursor:])
    result = Preprocessed(ids, labels, prompts)
    if cursor != len(ids):
        # The original masks the whole sample here, silently; we mask it too (the weights were trained that
        # way) but say so, so the dataset can count, log or refuse it.
        result.labels = [IGNORE_INDEX] * len(ids)
        result.mismatch = True
        result.notes.append(f"tokenization mismatch: {cursor} vs. {len(ids)} tokens")
    return result


def _adds_bos(tokenizer) -> bool:
    """Whether the tokenizer starts every text with its BOS. SmolLM2's does not, although its `bos_token`
    (`<|im_start|>`) opens every ChatML block: a leading BOS id cannot be dropped from a piece on sight."""
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a").input_ids[:1] == [bos]


def _preprocess_chatml(messages, tokenizer, template_name, placeholder_id, prompts) -> Preprocessed:
    """ChatML masking: everything is masked except each assistant message's text and its `<|im_end|>`."""
    template = get_template(template_name)
    turns = [("user" if m["from"] == "human" else "assistant", m["value"]) for m in messages]
    text = template.render(turns, add_generation_prompt=False)
    ids = tokenize_with_placeholders(tokenizer, text, placeholder_id)

    pieces = template.render_pieces(turns)  # (text, trained): joined they are `text`

    drop_bos = _adds_bos(tokenizer)
    piece_ids: list[int] = []
    labels: list[int] = []
    for index, (piece, trained) in enumerate(pieces):
        chunk = tokenize_with_placeholders(tokenizer, piece, placeholder_id)
        if index > 0 and drop_bos:
            chunk = chunk[1:]
        piece_ids += chunk
        labels += [i if trained and i != placeholder_id else IGNORE_INDEX for i in chunk]
    result = Preprocessed(ids, labels, prompts)
    if piece_ids != ids:
        # BPE merged across a piece boundary (an answer starting with whitespace, say): the boundaries are not
        # token boundaries, so no masking is trustworthy; mask all and say so, as `_preprocess_rounds` does.
        result.labels = [IGNORE_INDEX] * len(ids)
        result.mismatch = True
        result.notes.append(
            f"tokenization mismatch: pieces give {len(piece_ids)} tokens, the whole text {len(ids)}"
        )
    return result


__all__ = [
    "IGNORE_INDEX",
    "Preprocessed",
    "SUPPORTED_TEMPLATES",
    "add_turn_placeholders",
    "normalise_placeholders",
    "preprocess",
    "qformer_prompt",
    "tokenize_with_placeholders",
]
