"""Random checkpoints in the released LLaMA-VID on-disk layout, at the real widths, without the real weights.

What `write_release_checkpoint` writes is what a user downloads (behaviour spec section 3), so the converter, the
hub path and the loaders can be exercised at the size people run: the model folder (the original's `config.json`
for a named release, `pytorch_model-0000k-of-0000n.bin` shards with `pytorch_model.bin.index.json`, a LLaMA
sentencepiece tokenizer, `generation_config.json`), LAVIS's `eva_vit_g.pth` (float16, 40 blocks, 224 px), the
CLIP processor folder, BERT's 30522-line `vocab.txt` and, when asked, the InstructBLIP Q-Former file.

Notable choices:
- Nothing is built with real storage: the shapes come from our model built on the meta device, mapped back to the
  original's key names by the converter's reverse tables, plus the keys the original stores and the converter
  drops (`rotary_emb.inv_freq`, BERT's `position_ids`). Each tensor is made in its file's dtype (bfloat16 for the
  model folder, as the releases' `torch_dtype`) and saved shard by shard, so writing peaks at about one shard.
- Values are random but deterministic per key (`seed` and the key's name), so a different layer count or shard
  size changes the files, not the values of the tensors they share. Scales keep activations finite: matrices
  with standard deviation fan_in^-1/2, tables unit normal, norms at one, biases at zero.
- The LLM is cut to `llm_layers` layers (default: the real count) for tests and benchmarks; the vision tower and
  the Q-Former are always full size, as in the real files.
"""

from __future__ import annotations

import copy
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

VICUNA = {
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32},
    "13b": {"hidden_size": 5120, "intermediate_size": 13824, "num_hidden_layers": 40, "num_attention_heads": 40},
}
"""Vicuna-v1.5 sizes (vocabulary 32000, 4096 positions)."""
EVA_G = {"width": 1408, "mlp": 6144, "heads": 16, "patch": 14, "blocks_in_file": 40, "blocks_used": 39, "grid": 16}
BERT_BASE = {"width": 768, "layers": 12, "heads": 12, "mlp": 3072, "positions": 512, "vocab_lines": 30522}
NUM_QUERY = 32
DEFAULT_SHARD_SIZE = 10 * 1000**3
"""transformers 4.31's default `max_shard_size` ("10GB"), which the releases were saved with."""
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# Per released variant: what its config.json says beyond the LLM sizes (behaviour spec 3.1 and 3.4).
VARIANTS = {
    "llama-vid-7b-full-224": {"compress_type": None, "max_token": 4096},
    "llama-vid-7b-full-336": {"compress_type": None, "max_token": 4096},
    "llama-vid-13b-full-336": {"compress_type": None, "max_token": 4096},
    "llama-vid-7b-full-224-video-fps-1": {"compress_type": "mean", "max_token": 2048},
    "llama-vid-13b-full-224-video-fps-1": {"compress_type": "mean", "max_token": 2048},
    "llama-vid-7b-full-224-long-video": {
        "compress_type": "mean",
        "max_token": 65536,
        "bert_type": "qformer_pretrain_freeze_all",
        "rope_scaling": {"type": "linear", "factor": 16.0},
    },
}


@dataclass
class ReleaseCheckpoint:
    """Where `write_release_checkpoint` put each part; the paths are what `llamavid convert` takes."""

    root: Path
    model_dir: Path
    eva_path: Path
    processor_dir: Path
    qformer_vocab: Path
    instructblip_path: Path | None
    variant: str
    llm_layers: int
    shard_files: list[Path] = field(default_factory=list)

    def convert_arguments(self) -> list[str]:
        """`llamavid convert` options that convert this checkpoint offline (add `--out`)."""
        arguments = ["--model", str(self.model_dir), "--eva", str(self.eva_path)]
        arguments += ["--processor", str(self.processor_dir), "--qformer-vocab", str(self.qformer_vocab)]
        if self.instructblip_path is not None:
            arguments += ["--instructblip", str(self.instructblip_path)]
        return arguments

    @property
    def input_bytes(self) -> int:
        """Bytes of the weight files a conversion reads (shards and the EVA file)."""
        return sum(p.stat().st_size for p in [*self.shard_files, self.eva_path])

    @property
    def largest_shard_bytes(self) -> int:
        return max(p.stat().st_size for p in self.shard_files)


def release_variant(variant: str, size: str | None) -> tuple[str, str, int]:
    """(variant name, LLM size, image size) of a released full model, named with or without `YanweiLi/`."""
    name = variant.split("/", 1)[-1]
    if name not in VARIANTS:
        raise ValueError(f"{variant!r} is not a released full model: {', '.join(VARIANTS)}")
    llm = "13b" if "-13b-" in name else "7b"
    if size is not None and size != llm:
        raise ValueError(f"{name} is a {llm} model, size {size!r} was asked for")
    return name, llm, 336 if "-336" in name else 224


def original_config(variant: str, llm_layers: int | None = None) -> dict:
    """The `config.json` the original saves for `variant` (behaviour spec 3.4), with the LLM cut to `llm_layers`."""
    name, llm, image_size = release_variant(variant, None)
    sizes = dict(VICUNA[llm])
    if llm_layers is not None:
        sizes["num_hidden_layers"] = llm_layers
    extra = copy.deepcopy(VARIANTS[name])  # transformers edits rope_scaling in place
    return {
        "_name_or_path": f"./work_dirs/{name}",
        "architectures": ["LlavaLlamaAttForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        **sizes,
        "initializer_range": 0.02,
        "max_position_embeddings": 4096,
        "model_type": "llava",
        "num_key_value_heads": sizes["num_attention_heads"],
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": extra.pop("rope_scaling", None),
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.31.0",
        "use_cache": True,
        "vocab_size": 32000,
        "mm_vision_tower": "./model_zoo/LAVIS/eva_vit_g.pth",
        "image_processor": f"./llamavid/processor/clip-patch14-{image_size}",
        "mm_hidden_size": EVA_G["width"],
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "use_mm_proj": True,
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
        "image_grid_pinpoints": None,
        "tune_mm_mlp_adapter": False,
        "freeze_mm_mlp_adapter": False,
        "bert_type": extra.pop("bert_type", "qformer_pretrain"),
        "num_query": NUM_QUERY,
        **extra,
    }


def converted_config(original: dict, image_size: int):
    """Our config for the same shapes (what the converter will build), used only to make meta tensors."""
    from ..model.configuration import LlamaVidConfig
    from ..model.convert import LLAMA_KEYS, parse_compress_type

    compress, grid_size = parse_compress_type(original["compress_type"])
    text = {k: original[k] for k in LLAMA_KEYS if k in original}
    return LlamaVidConfig(
        vision_config={
            "hidden_size": EVA_G["width"],
            "intermediate_size": EVA_G["mlp"],
            "num_hidden_layers": EVA_G["blocks_used"],
            "num_attention_heads": EVA_G["heads"],
            "image_size": image_size,
            "patch_size": EVA_G["patch"],
        },
        qformer_config={
            "vocab_size": BERT_BASE["vocab_lines"] + 1,  # + [DEC]
            "hidden_size": BERT_BASE["width"],
            "num_hidden_layers": BERT_BASE["layers"],
            "num_attention_heads": BERT_BASE["heads"],
            "intermediate_size": BERT_BASE["mlp"],
            "max_position_embeddings": BERT_BASE["positions"],
            "cross_attention_frequency": 2,
        },
        text_config={**text, "model_type": "llama"},
        num_query=NUM_QUERY,
        compress=compress,
        grid_size=grid_size,
    )


def model_folder_shapes(original: dict, image_size: int) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """Key -> (shape, dtype) of a released model folder's state dict, in the order the original saves it."""
    from ..model.convert import ours_to_original
    from ..model.modeling import LlamaVidForConditionalGeneration

    with torch.device("meta"):
        model = LlamaVidForConditionalGeneration(converted_config(original, image_size))
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith("vision_tower.")}
    keys, _ = ours_to_original(ours)
    shapes = {k: (v.shape, torch.bfloat16) for k, v in keys.items()}
    head_dim = original["hidden_size"] // original["num_attention_heads"]
    for layer in range(original["num_hidden_layers"]):
        shapes[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = (torch.Size([head_dim // 2]), torch.float32)
    position_ids = "model.vlm_att_encoder.bert.embeddings.position_ids"
    shapes[position_ids] = (torch.Size([1, BERT_BASE["positions"]]), torch.int64)

    def saving_order(key: str):  # LlamaForCausalLM's order: embeddings, layers, norm, the adapter, then lm_head
        layer = key.split(".")[2] if key.startswith("model.layers.") else None
        rank = 0 if key.startswith("model.embed_tokens") else 1 if layer else 2 if key.startswith("model.norm") else 4 if key.startswith("lm_head") else 3
        return (rank, int(layer) if layer else 0)

    return dict(sorted(shapes.items(), key=lambda item: saving_order(item[0])))


def eva_file_shapes() -> dict[str, torch.Size]:
    """Key -> shape of LAVIS's `eva_vit_g.pth` (behaviour spec 3.5): 40 blocks, 224 px."""
    width, mlp, patch = EVA_G["width"], EVA_G["mlp"], EVA_G["patch"]
    shapes = {
        "cls_token": torch.Size([1, 1, width]),
        "pos_embed": torch.Size([1, 1 + EVA_G["grid"] ** 2, width]),
        "patch_embed.proj.weight": torch.Size([width, 3, patch, patch]),
        "patch_embed.proj.bias": torch.Size([width]),
    }
    for block in range(EVA_G["blocks_in_file"]):
        prefix = f"blocks.{block}."
        shapes.update({
            prefix + "norm1.weight": torch.Size([width]),
            prefix + "norm1.bias": torch.Size([width]),
            prefix + "attn.q_bias": torch.Size([width]),
            prefix + "attn.v_bias": torch.Size([width]),
            prefix + "attn.qkv.weight": torch.Size([3 * width, width]),
            prefix + "attn.proj.weight": torch.Size([width, width]),
            prefix + "attn.proj.bias": torch.Size([width]),
            prefix + "norm2.weight": torch.Size([width]),
            prefix + "norm2.bias": torch.Size([width]),
            prefix + "mlp.fc1.weight": torch.Size([mlp, width]),
            prefix + "mlp.fc1.bias": torch.Size([mlp]),
            prefix + "mlp.fc2.weight": torch.Size([width, mlp]),
            prefix + "mlp.fc2.bias": torch.Size([width]),
        })
    return shapes


_TABLES = ("embed_tokens.weight", "embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
           "vlm_att_query", "query_tokens", "cls_token", "pos_embed")


def random_tensor(key: str, shape: torch.Size, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """A deterministic random value for `key` (see the module docstring for the scales)."""
    if key.endswith("rotary_emb.inv_freq"):
        return 1.0 / (10000 ** (torch.arange(0, 2 * shape[0], 2, dtype=torch.float32) / (2 * shape[0])))
    if key.endswith("position_ids"):
        return torch.arange(shape[-1], dtype=dtype).expand(shape).contiguous()
    if len(shape) < 2 or key.endswith("_bias"):
        is_norm = key.endswith("weight") and any(n in key for n in ("norm", "LayerNorm", "ln"))
        return torch.ones(shape, dtype=dtype) if is_norm else torch.zeros(shape, dtype=dtype)
    generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
    std = 1.0 if key.endswith(_TABLES) else shape[1:].numel() ** -0.5
    return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=generator)


def plan_shards(sizes: dict[str, int], shard_size: int) -> list[list[str]]:
    """Keys in order, cut into shards of at most `shard_size` bytes (a bigger tensor gets a shard of its own)."""
    shards: list[list[str]] = [[]]
    used = 0
    for key, size in sizes.items():
        if shards[-1] and used + size > shard_size:
            shards.append([])
            used = 0
        shards[-1].append(key)
        used += size
    return shards


def _write_tokenizers(model_dir: Path, root: Path) -> Path:
    from .tiny import _CORPUS, train_sentencepiece_llama_tokenizer

    sentences = [s.strip() + "." for s in _CORPUS.split(".") if s.strip()]
    tokenizer = train_sentencepiece_llama_tokenizer(sentences * 4, vocab_size=400, directory=model_dir)
    tokenizer.save_pretrained(model_dir)
    (model_dir / "tokenizer.vocab").unlink(missing_ok=True)  # sentencepiece's by-product; releases have none
    words = sorted({w for w in _CORPUS.lower().replace(".", " . ").replace("?", " ? ").replace(",", " , ").split()})
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    vocab = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters,
                                *(f"##{c}" for c in letters)]))
    vocab += [f"[unused{i}]" for i in range(BERT_BASE["vocab_lines"] - len(vocab))]
    vocab_file = root / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    return vocab_file


def _write_processor(folder: Path, image_size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "crop_size": image_size,
        "do_center_crop": True,
        "do_normalize": True,
        "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "resample": 3,
        "size": image_size,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")


def _write_instructblip(path: Path, shapes: dict, seed: int) -> None:
    """LAVIS's trimmed InstructBLIP file: {"model": Q-Former, ln_vision, query tokens, llm_proj}, float32."""
    from ..model.convert import INSTRUCTBLIP_RENAMES, rename_key

    tensors = {}
    for key, (shape, dtype) in shapes.items():
        source = rename_key(key, INSTRUCTBLIP_RENAMES, reverse=True)
        if source is not None:
            value_dtype = dtype if dtype == torch.int64 else torch.float32
            tensors[source] = random_tensor(source, shape, value_dtype, seed + 1)
    width = shapes["model.embed_tokens.weight"][0][1]
    tensors["llm_proj.weight"] = random_tensor("llm_proj.weight", torch.Size([width, BERT_BASE["width"]]), torch.float32, seed)
    tensors["llm_proj.bias"] = torch.zeros(width)
    torch.save({"model": tensors}, path)


def write_release_checkpoint(
    out_dir,
    *,
    size: str | None = None,
    llm_layers: int | None = None,
    variant: str | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    seed: int = 0,
    instructblip: bool = False,
) -> ReleaseCheckpoint:
    """Write a random checkpoint in a released model's on-disk layout under `out_dir` and return where.

    `size` is "7b" or "13b" (default: the variant's, else 7b); `variant` a released full model's name (default:
    the size's `llama-vid-{size}-full-224-video-fps-1`); `llm_layers` cuts the LLM (default: the real 32 or 40);
    `shard_size` is in bytes; `instructblip` also writes the InstructBLIP Q-Former file (float32, ~0.8 GB), which
    released model folders do not need. Layout: `out_dir/<variant>/` (model folder), `out_dir/eva_vit_g.pth`,
    `out_dir/processor/`, `out_dir/vocab.txt`."""
    if variant is None:
        variant = f"llama-vid-{size or '7b'}-full-224-video-fps-1"
    name, _, image_size = release_variant(variant, size)
    if llm_layers is not None and llm_layers < 1:
        raise ValueError(f"llm_layers must be at least 1, got {llm_layers}")
    root = Path(out_dir)
    model_dir = root / name
    model_dir.mkdir(parents=True, exist_ok=True)
    config = original_config(name, llm_layers)
    (model_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    generation = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "transformers_version": "4.31.0"}
    (model_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")

    shapes = model_folder_shapes(config, image_size)
    sizes = {key: shape.numel() * dtype.itemsize for key, (shape, dtype) in shapes.items()}
    shards = plan_shards(sizes, shard_size)
    weight_map, files = {}, []
    for number, keys in enumerate(shards, start=1):
        filename = f"pytorch_model-{number:05d}-of-{len(shards):05d}.bin"
        tensors = {key: random_tensor(key, *shapes[key], seed) for key in keys}
        torch.save(tensors, model_dir / filename)
        del tensors
        weight_map.update(dict.fromkeys(keys, filename))
        files.append(model_dir / filename)
    index = {"metadata": {"total_size": sum(sizes.values())}, "weight_map": weight_map}
    (model_dir / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")

    eva_path = root / "eva_vit_g.pth"
    eva = {key: random_tensor(key, shape, torch.float16, seed) for key, shape in eva_file_shapes().items()}
    torch.save(eva, eva_path)
    del eva
    instructblip_path = None
    if instructblip:
        instructblip_path = root / f"instruct_blip_vicuna{name.split('-')[2]}_trimmed.pth"
        _write_instructblip(instructblip_path, shapes, seed)
    vocab_file = _write_tokenizers(model_dir, root)
    processor_dir = root / "processor"
    _write_processor(processor_dir, image_size)
    return ReleaseCheckpoint(
        root=root,
        model_dir=model_dir,
        eva_path=eva_path,
        processor_dir=processor_dir,
        qformer_vocab=vocab_file,
        instructblip_path=instructblip_path,
        variant=name,
        llm_layers=config["num_hidden_layers"],
        shard_files=files,
    )


__all__ = ["ReleaseCheckpoint", "VARIANTS", "converted_config", "original_config", "write_release_checkpoint"]
