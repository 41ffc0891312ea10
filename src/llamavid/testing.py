"""Tiny random LLaMA-VID models for tests, benchmarks and examples: no download, built in well under a second.

Sizes follow STYLE.md's tester helper (hidden 32, 2 layers, 4 queries, image 28, patch 7 -> a 4x4 patch grid).
The LLM tokenizer is a byte-level BPE trained on a few sentences, so any text round-trips; the Q-Former
tokenizer is a small uncased WordPiece vocabulary with the original's `[DEC]` and left truncation.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .model.configuration import LlamaVidConfig

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
    from .model.processing import build_qformer_tokenizer

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
) -> LlamaVidConfig:
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
    from .model.modeling import LlamaVidForConditionalGeneration
    from .model.processing import LlamaVidProcessor

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


def write_test_video(
    path, seconds: float, fps: int = 10, size: tuple[int, int] = (48, 64), keyframe_every: int | None = None
):
    """A real h264 file: a red bar sweeping right over a background that brightens every second, so frames
    taken at different times differ. Returns `path`."""
    import av
    import numpy as np

    height, width = size
    options = {"g": str(keyframe_every)} if keyframe_every else {}
    with av.open(str(path), "w") as container:
        stream = container.add_stream("h264", rate=fps, options=options)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        for index in range(int(seconds * fps)):
            frame = np.full((height, width, 3), (index // fps * 25) % 200, np.uint8)
            x = (index * 3) % width
            frame[:, x : x + max(width // 8, 1)] = (220, 40, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def supervised_spans(labels: list[int], ignore_index: int = -100) -> list[tuple[int, int]]:
    """[start, end) runs of positions that carry a label (not `ignore_index`): what label-masking tests compare."""
    spans, start = [], None
    for position, label in enumerate([*labels, ignore_index]):
        if label != ignore_index and start is None:
            start = position
        if label == ignore_index and start is not None:
            spans.append((start, position))
            start = None
    return spans


__all__ = [
    "supervised_spans",
    "tiny_config",
    "tiny_model_and_processor",
    "tiny_qformer_tokenizer",
    "tiny_tokenizer",
    "write_test_video",
]
