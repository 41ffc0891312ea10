"""Tiny models for training tests, benchmarks and the demo: a real sentencepiece LLaMA tokenizer trained in a
second on a small corpus, and LLaMA-VID configs at toy scale.

The tokenizer matters for label masking: the original's v1 masking counts tokens with the legacy LLaMA
sentencepiece tokenizer (a prefix space after `</s>`, a dangling `▁` after "ASSISTANT: "), so the toy tokenizer
is the same kind of model (BPE, byte fallback, dummy prefix) loaded through transformers' `LlamaTokenizer`
with `legacy=True`.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

SPECIAL_IDS = {"unk": 0, "bos": 1, "eos": 2}


def train_sentencepiece_llama_tokenizer(corpus: Iterable[str], vocab_size: int = 512, directory=None):
    """Train a BPE sentencepiece model on `corpus` and load it as a legacy LLaMA tokenizer (pad = `<unk>`).

    The `tokenizer.model` file is written to `directory` (a temporary one by default), so the tokenizer can
    be saved beside a model like any LLaMA tokenizer.
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    directory = Path(directory or tempfile.mkdtemp(prefix="llamavid-sp-"))
    directory.mkdir(parents=True, exist_ok=True)
    lines = [line for line in corpus if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=str(directory / "tokenizer"),
        vocab_size=vocab_size,
        model_type="bpe",
        byte_fallback=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        split_digits=True,
        character_coverage=1.0,
        unk_id=SPECIAL_IDS["unk"],
        bos_id=SPECIAL_IDS["bos"],
        eos_id=SPECIAL_IDS["eos"],
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    logging.getLogger(__name__).debug("sentencepiece model written to %s", directory)
    tokenizer = LlamaTokenizer.from_pretrained(
        directory, legacy=True, add_bos_token=True, add_eos_token=False
    )
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer


def train_qformer_tokenizer(corpus: Iterable[str], directory=None):
    """An uncased WordPiece Q-Former tokenizer whose vocabulary is every word and punctuation mark of `corpus`
    (plus single letters and `##` suffix letters for unseen words), so a prompt costs one id a word."""
    import re

    from ..model.processing import build_qformer_tokenizer

    words = sorted({w for line in corpus for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", line.lower())})
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters, *(f"##{c}" for c in letters)]
    directory = Path(directory or tempfile.mkdtemp(prefix="llamavid-qformer-"))
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "vocab.txt"
    path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    return build_qformer_tokenizer(path)


def tiny_llamavid_config(
    text_vocab_size: int,
    qformer_vocab_size: int,
    image_size: int = 32,
    patch_size: int = 8,
    vision_width: int = 64,
    vision_layers: int = 2,
    qformer_width: int = 64,
    qformer_layers: int = 1,
    num_query: int = 4,
    text_width: int = 128,
    text_layers: int = 2,
    text_config: dict | None = None,
    **overrides,
):
    """A toy LLaMA-VID config (all sizes explicit, defaults as in facts.md's prototypes), on the test helper's.
    `text_config` (a real LLM's config as a dict) replaces the toy LLM: only the vision side is then toy-sized."""
    from ..testing import tiny_config

    settings = dict(
        num_query=num_query,
        compress="mean",
        qformer_max_length=32,
        max_sequence_length=1024,
        pad_to_square=False,
        chat_template="imgsp_v1",
    )
    settings.update(overrides)
    return tiny_config(
        text_vocab_size,
        qformer_vocab_size,
        vision_overrides=dict(
            hidden_size=vision_width,
            intermediate_size=2 * vision_width,
            num_hidden_layers=vision_layers,
            image_size=image_size,
            patch_size=patch_size,
        ),
        qformer_overrides=dict(
            hidden_size=qformer_width,
            num_hidden_layers=qformer_layers,
            intermediate_size=2 * qformer_width,
            cross_attention_frequency=1,
            hidden_dropout_prob=0.0,  # a toy model trained for minutes: dropout only slows it
            attention_probs_dropout_prob=0.0,
        ),
        text_overrides=text_config
        or dict(
            hidden_size=text_width,
            intermediate_size=2 * text_width,
            num_hidden_layers=text_layers,
            max_position_embeddings=1024,
        ),
        **settings,
    )


__all__ = ["tiny_llamavid_config", "train_qformer_tokenizer", "train_sentencepiece_llama_tokenizer"]
