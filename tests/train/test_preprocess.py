"""Label masking per template with a real sentencepiece LLaMA tokenizer: exactly the assistant parts train."""

import random

import pytest

from llamavid.testing import supervised_spans
from llamavid.train.preprocess import IGNORE_INDEX, preprocess, tokenize_with_placeholders

PH = 10_000
CONVERSATION = [
    {"from": "human", "value": "What colour is the square?\n<image>"},
    {"from": "gpt", "value": "red"},
    {"from": "human", "value": "Which shape appeared first?\nAnswer with one word."},
    {"from": "gpt", "value": "The circle moves left."},
]


def supervised(tok, result):
    return tok.decode([i for i, label in zip(result.input_ids, result.labels, strict=True) if label != IGNORE_INDEX])


@pytest.mark.parametrize("template", ["imgsp_v1", "vicuna_v1", "llava_v1"])
def test_v1_masks_everything_but_answers_and_eos(sp_tokenizer, template):
    result = preprocess(CONVERSATION, sp_tokenizer, template, PH, True, random.Random(0))
    assert not result.mismatch
    spans = supervised_spans(result.labels)
    assert len(spans) == 2
    pieces = [sp_tokenizer.convert_ids_to_tokens(result.input_ids[a:b]) for a, b in spans]
    assert "".join(pieces[0]).replace("▁", " ").strip() == "red</s>"
    assert "".join(pieces[1]).replace("▁", " ").strip() == "The circle moves left.</s>"
    assert result.labels[0] == IGNORE_INDEX and result.input_ids[0] == sp_tokenizer.bos_token_id
    # the supervised tokens are exactly those of the answers followed by EOS
    assert result.input_ids[spans[0][0] : spans[0][1]] == sp_tokenizer("red</s>").input_ids[1:]


def test_imgsp_v1_gives_every_turn_a_placeholder_and_prompt(sp_tokenizer):
    for seed in range(12):
        result = preprocess(CONVERSATION, sp_tokenizer, "imgsp_v1", PH, True, random.Random(seed))
        assert result.input_ids.count(PH) == 2
        # newlines deleted without a space, <image> removed
        assert result.prompts == ["What colour is the square?", "Which shape appeared first?Answer with one word."]
        text = sp_tokenizer.decode([i for i in result.input_ids if i != PH])
        assert "<image>" not in text
    # start and end placement both happen (random per sample and epoch)
    starts = set()
    for seed in range(12):
        ids = preprocess(CONVERSATION, sp_tokenizer, "imgsp_v1", PH, True, random.Random(seed)).input_ids
        starts.add(ids.index(PH, ids.index(PH) + 1))
    assert len(starts) == 2


def test_vicuna_v1_adds_no_placeholder_and_moves_image_to_front(sp_tokenizer):
    result = preprocess(CONVERSATION, sp_tokenizer, "vicuna_v1", PH, True)
    assert result.input_ids.count(PH) == 1
    assert result.prompts == ["What colour is the square?"]
    position = result.input_ids.index(PH)
    before = sp_tokenizer.decode(result.input_ids[:position])
    assert before.rstrip().endswith("USER:")


def test_llama_2_masking(sp_tokenizer):
    result = preprocess(CONVERSATION, sp_tokenizer, "llama_2", PH, True)
    assert not result.mismatch
    assert supervised(sp_tokenizer, result).split("</s>")[0].strip() == "red"
    assert len(supervised_spans(result.labels)) == 2


@pytest.mark.parametrize("template", ["plain_guided", "plain"])
def test_plain_trains_caption_and_newline(sp_tokenizer, template):
    result = preprocess(CONVERSATION[:2], sp_tokenizer, template, PH, True)
    assert result.input_ids[:2] == [sp_tokenizer.bos_token_id, PH]
    assert result.labels[:2] == [IGNORE_INDEX, IGNORE_INDEX]
    assert all(label != IGNORE_INDEX for label in result.labels[2:])
    assert supervised(sp_tokenizer, result).strip("\n ") == "red"
    last = sp_tokenizer.convert_ids_to_tokens(result.input_ids[-1:])[0]
    assert last in ("<0x0A>", "\n") or last.endswith("\n")
    assert result.prompts == ["What colour is the square?"]


def test_text_only_sample_has_no_prompt(sp_tokenizer):
    text_only = [{"from": "human", "value": "Name a colour."}, {"from": "gpt", "value": "blue"}]
    result = preprocess(text_only, sp_tokenizer, "imgsp_v1", PH, False)
    assert result.prompts == [] and PH not in result.input_ids
    assert supervised(sp_tokenizer, result).strip() == "blue</s>"


def test_mismatch_is_reported_not_hidden(sp_tokenizer):
    class Shifted:
        """A tokenizer that drops the prefix space after </s> (non-legacy): counts stop matching."""

        bos_token_id = sp_tokenizer.bos_token_id

        def __call__(self, text):
            ids = sp_tokenizer(text).input_ids
            return type("E", (), {"input_ids": ids + ([5] if "</s>" in text and "USER" in text else [])})()

    result = preprocess(CONVERSATION, Shifted(), "vicuna_v1", PH, True)
    assert result.mismatch and "mismatch" in result.notes[0]
    assert all(label == IGNORE_INDEX for label in result.labels)


def test_placeholder_chunks_keep_one_bos(sp_tokenizer):
    ids = tokenize_with_placeholders(sp_tokenizer, "a<image>b<image>c", PH)
    assert ids.count(sp_tokenizer.bos_token_id) == 1 and ids.count(PH) == 2


def test_unknown_template_is_one_line_error(sp_tokenizer):
    with pytest.raises(ValueError, match="not supported"):
        preprocess(CONVERSATION, sp_tokenizer, "mpt", PH, True)


def test_training_and_the_processor_split_image_placeholders_alike(sp_tokenizer):
    from llamavid.model.processing import tokenize_between_placeholders

    chunks, placeholders = tokenize_between_placeholders(sp_tokenizer, "a<image>b<image>c")
    assert placeholders == ["<image>", "<image>"]
    assert tokenize_with_placeholders(sp_tokenizer, "a<image>b<image>c", PH) == [
        *chunks[0], PH, *chunks[1], PH, *chunks[2]]
    # training turns `<video>` into `<image>` before this; text left with one is text
    assert PH not in tokenize_with_placeholders(sp_tokenizer, "a<video>b", PH)
