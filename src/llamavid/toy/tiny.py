"""Tiny LLaMA-VID models, no download, built in well under a second: random ones for tests, benchmarks and
examples (`tiny_model_and_processor`; sizes as STYLE.md's tester helper: hidden 32, 2 layers, 4 queries,
image 28, patch 7 -> a 4x4 patch grid), and trainable toy-sized ones for the toy recipes (`tiny_llamavid_config`,
with tokenizers trained on the recipe's own data).

Tokenizers: the random models' LLM tokenizer is a byte-level BPE trained on a few sentences, so any text
round-trips; the toy recipes' is a real sentencepiece LLaMA tokenizer trained in a second on the corpus, which
matters for label masking: the original's v1 masking counts tokens with the legacy LLaMA sentencepiece tokenizer
(a prefix space after `</s>`, a dangling `▁` after "ASSISTANT: "), so the toy tokenizer is the same kind of model
(BPE, byte fallback, dummy prefix) loaded through transformers' `LlamaTokenizer` with `legacy=True`. Q-Former
tokenizers are small uncased WordPiece vocabularies with the original's `[DEC]` and left truncation.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import torch

from ..atomic_files import atomic_write, write_text_atomically
from ..model.configuration import LlamaVidConfig

_CORPUS = (
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions. USER: ASSISTANT: What is happening in this image? "
    "Describe the video in detail. What colour is the square? The red circle moves left, then the blue "
    "triangle appears. Is there a cat? Yes. No. Answer the question using a single word or phrase. 0 1 2 3 4 5 "
    "6 7 8 9 green yellow shape first second order direction up down right movie frame subtitle"
)
_QFORMER_WORDS = sorted(
    set(_CORPUS.lower().replace(".", " . ").replace("?", " ? ").replace(",", " , ").split())
)


def tiny_tokenizer(vocab_size: int = 320):
    """A byte-level BPE LLaMA-style tokenizer (BOS `<s>`, EOS `</s>`, pad = `<unk>` id 0)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<unk>"
    )


def tiny_qformer_tokenizer():
    from ..model.processing import build_qformer_tokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_QFORMER_WORDS]
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"] + list("abcdefghijklmnopqrstuvwxyz'")
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "vocab.txt"
        path.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
        return build_qformer_tokenizer(path)


def tiny_config(
    text_vocab_size: int = 320,
    qformer_vocab_size: int = 200,
    text_overrides: dict | None = None,
    vision_overrides: dict | None = None,
    qformer_overrides: dict | None = None,
    **overrides,
):
    """`overrides` replace top-level fields; `*_overrides` fields of a sub-config (e.g. the LLM's RoPE scaling)."""
    settings = dict(
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            image_size=28,
            patch_size=7,
        ),
        qformer_config=dict(
            vocab_size=qformer_vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        text_config=dict(
            model_type="llama",
            vocab_size=text_vocab_size,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=2048,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        ),
        num_query=4,
        compress="mean",
        qformer_max_length=32,
        max_sequence_length=2048,
    )
    settings["text_config"].update(text_overrides or {})
    settings["vision_config"].update(vision_overrides or {})
    settings["qformer_config"].update(qformer_overrides or {})
    settings.update(overrides)
    return LlamaVidConfig(**settings)


def tiny_image_processor(size: int = 28):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def tiny_model_and_processor(seed: int = 0, **overrides):
    """(model in eval mode, processor) with random weights at unit-ish scale, deterministic for `seed`."""
    from ..model.modeling import LlamaVidForConditionalGeneration
    from ..model.processing import LlamaVidProcessor

    tokenizer = tiny_tokenizer()
    qformer_tokenizer = tiny_qformer_tokenizer()
    config = tiny_config(
        text_vocab_size=len(tokenizer), qformer_vocab_size=len(qformer_tokenizer), **overrides
    )
    torch.manual_seed(seed)
    model = LlamaVidForConditionalGeneration(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            # transformers' InstructBLIP init (std 1e-10 for the vision tower) would make every patch identical
            if parameter.dim() < 2:
                continue
            is_table = name.endswith(
                ("embed_tokens.weight", "embeddings.weight", "embedding", "query_tokens")
            )
            fan_in = parameter[0].numel()
            parameter.normal_(0.0, 1.0 if is_table else fan_in**-0.5)
    processor = LlamaVidProcessor(
        tiny_image_processor(config.image_size), tokenizer, qformer_tokenizer, config
    )
    return model, processor


SPECIAL_IDS = {"unk": 0, "bos": 1, "eos": 2}


def train_sentencepiece_llama_tokenizer(corpus: Iterable[str], vocab_size: int = 512, directory=None):
    """Train a BPE sentencepiece model on `corpus` and load it as a legacy LLaMA tokenizer (pad = `<unk>`).

    The `tokenizer.model` file is written to `directory` (a temporary one by default), so the tokenizer can
    be saved beside a model like any LLaMA tokenizer. It is trained in a private folder and renamed into place:
    every rank of a distributed run builds the same toy model, and one rank must never load the file another is
    still writing.
    """
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    directory = Path(directory or tempfile.mkdtemp(prefix="llamavid-sp-"))
    directory.mkdir(parents=True, exist_ok=True)
    lines = [line for line in corpus if line.strip()]
    private = Path(tempfile.mkdtemp(prefix=".sentencepiece-", dir=directory))
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines),
            model_prefix=str(private / "tokenizer"),
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
        for trained in private.iterdir():
            with atomic_write(directory / trained.name) as temporary:
                trained.replace(temporary)
    finally:
        shutil.rmtree(private, ignore_errors=True)  # empty once moved; after a failed training, its partial files
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
    # written whole by a rename: every rank of a distributed run writes the same file and reads it back
    path = write_text_atomically(directory / "vocab.txt", "\n".join(dict.fromkeys(vocab)) + "\n")
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
    """A toy LLaMA-VID config (all sizes explicit), built on `tiny_config`.
    `text_config` (a real LLM's config as a dict) replaces the toy LLM: only the vision side is then toy-sized."""
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


__all__ = [
    "tiny_config",
    "tiny_image_processor",
    "tiny_llamavid_config",
    "tiny_model_and_processor",
    "tiny_qformer_tokenizer",
    "tiny_tokenizer",
    "train_qformer_tokenizer",
    "train_sentencepiece_llama_tokenizer",
]
