"""Import of the released LLaMA-VID checkpoints into our format.

Input, as the original loads them: the model folder (`config.json`, `pytorch_model-*.bin` shards + index, the
LLaMA tokenizer), the LAVIS EVA-ViT-G file (`eva_vit_g.pth`), optionally the InstructBLIP Q-Former file (used
only for weights the model folder lacks), the CLIP image-processor folder, and bert-base-uncased's
`vocab.txt`. Output: one folder with safetensors weights, our config, both tokenizers and the image processor,
which `LlamaVidForConditionalGeneration.from_pretrained` and `LlamaVidProcessor.from_pretrained` load.

Conversion is a pure function over state dicts driven by the explicit rename tables below (tested in both
directions). Every key is accounted for: renamed, merged (EVA's q/v biases), or dropped by a listed rule; any
other key, and any weight the model needs but did not get, is an error that lists them.

`convert_checkpoint` streams, so a 7B or 13B release converts on a 24 GB machine: those functions first run on
meta tensors (shapes only) for the checks and the key map, then each output tensor is read from the memory-mapped
inputs, renamed and cast alone, and written shard by shard in `save_pretrained`'s safetensors layout
(`checkpoint_files`). The output is the same, byte for byte, as loading everything into a model and saving it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint_files import (
    DEFAULT_SHARD_SIZE,
    ConversionError,
    ShardedWeights,
    WeightFile,
    original_weight_files,
    write_sharded_safetensors,
)
from .configuration import LlamaVidConfig

logger = logging.getLogger(__name__)

# (original key pattern, our key pattern); `{n}` stands for a layer number. First match wins, both directions.
LLAMAVID_RENAMES: tuple[tuple[str, str], ...] = (
    ("model.embed_tokens.", "language_model.model.embed_tokens."),
    ("model.layers.", "language_model.model.layers."),
    ("model.norm.", "language_model.model.norm."),
    ("lm_head.", "language_model.lm_head."),
    ("model.mm_projector.", "token_generator.content_projector."),
    ("model.vlm_att_query", "token_generator.query_tokens"),
    ("model.vlm_att_ln.", "token_generator.vision_layernorm."),
    ("model.vlm_att_projector.", "token_generator.query_projector."),
    ("model.vlm_att_key_projector.", "token_generator.key_projector."),
    ("model.vlm_att_val_projector.", "token_generator.context_projector."),
    ("model.vlm_att_encoder.bert.embeddings.LayerNorm.", "token_generator.qformer.embeddings.layernorm."),
    ("model.vlm_att_encoder.bert.embeddings.", "token_generator.qformer.embeddings."),
    (
        "model.vlm_att_encoder.bert.encoder.layer.{n}.attention.self.",
        "token_generator.qformer.encoder.layer.{n}.attention.attention.",
    ),
    (
        "model.vlm_att_encoder.bert.encoder.layer.{n}.crossattention.self.",
        "token_generator.qformer.encoder.layer.{n}.crossattention.attention.",
    ),
    ("model.vlm_att_encoder.bert.encoder.", "token_generator.qformer.encoder."),
)

# LAVIS EVA-ViT-G keys (no prefix) -> our vision tower. q_bias/v_bias are merged into qkv.bias separately.
EVA_RENAMES: tuple[tuple[str, str], ...] = (
    ("cls_token", "vision_tower.model.embeddings.class_embedding"),
    ("pos_embed", "vision_tower.model.embeddings.position_embedding"),
    ("patch_embed.proj.", "vision_tower.model.embeddings.patch_embedding."),
    ("blocks.{n}.norm1.", "vision_tower.model.encoder.layers.{n}.layer_norm1."),
    ("blocks.{n}.norm2.", "vision_tower.model.encoder.layers.{n}.layer_norm2."),
    ("blocks.{n}.attn.qkv.weight", "vision_tower.model.encoder.layers.{n}.self_attn.qkv.weight"),
    ("blocks.{n}.attn.proj.", "vision_tower.model.encoder.layers.{n}.self_attn.projection."),
    ("blocks.{n}.mlp.", "vision_tower.model.encoder.layers.{n}.mlp."),
)

# InstructBLIP (LAVIS) keys used by LLaMA-VID -> the original's names; everything else in that file is unused.
INSTRUCTBLIP_RENAMES: tuple[tuple[str, str], ...] = (
    ("Qformer.bert.", "model.vlm_att_encoder.bert."),
    ("ln_vision.", "model.vlm_att_ln."),
    ("query_tokens", "model.vlm_att_query"),
)

# Keys the original stores but never reads as weights: buffers derived from the config, and the copies of the
# frozen EVA weights that training leaves in full checkpoints (used only when no EVA file is given).
DERIVED_KEYS = (
    re.compile(r"^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$"),
    re.compile(r"^model\.vlm_att_encoder\.bert\.embeddings\.position_ids$"),
)
EMBEDDED_EVA_PREFIX = "model.vision_tower.vision_tower."
EVA_G_WIDTH, EVA_G_BLOCKS_USED, EVA_G_HEADS = 1408, 39, 16
BERT_BASE_WIDTH, BERT_BASE_HEADS = 768, 12


def _compile(pattern: str) -> re.Pattern:
    return re.compile("^" + re.escape(pattern).replace(re.escape("{n}"), r"(?P<n>\d+)"))


def rename_key(key: str, table: tuple[tuple[str, str], ...], reverse: bool = False) -> str | None:
    """`key` renamed by the first matching prefix of `table` (or of its mirror image), None when none match."""
    for source, target in table:
        if reverse:
            source, target = target, source
        match = _compile(source).match(key)
        if match:
            layer = match.groupdict().get("n")
            return target.replace("{n}", layer or "") + key[match.end() :]
    return None


def _rename_all(state_dict, table, reverse=False) -> tuple[dict, list[str]]:
    renamed, unknown = {}, []
    for key, value in state_dict.items():
        new = rename_key(key, table, reverse)
        if new is None:
            unknown.append(key)
        else:
            renamed[new] = value
    return renamed, unknown


def _raise_unknown(unknown: list[str], source: str) -> None:
    if unknown:
        shown = ", ".join(sorted(unknown)[:20]) + (" ..." if len(unknown) > 20 else "")
        raise ConversionError(f"{len(unknown)} unexpected keys in {source}: {shown}")


def resize_position_embedding(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """The original's EVA position resize: CLS position kept, the square patch grid resized bicubically
    (align_corners=False) in float32. (1, 1 + g0^2, V) -> (1, 1 + grid^2, V)."""
    old_grid = math.isqrt(pos_embed.shape[1] - 1)
    if old_grid == grid:
        return pos_embed
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:]
    patch_pos = patch_pos.reshape(1, old_grid, old_grid, -1).permute(0, 3, 1, 2).float()  # (1, V, g0, g0)
    patch_pos = F.interpolate(patch_pos, size=(grid, grid), mode="bicubic", align_corners=False)
    patch_pos = patch_pos.permute(0, 2, 3, 1).flatten(1, 2).to(pos_embed.dtype)  # (1, grid^2, V)
    return torch.cat([cls_pos, patch_pos], dim=1)


def eva_to_ours(eva: Mapping[str, torch.Tensor], num_blocks: int, grid: int) -> dict[str, torch.Tensor]:
    """LAVIS EVA-ViT-G state dict -> our vision tower; blocks past `num_blocks` are not used (BLIP-2 builds 39 of
    EVA-CLIP-g's 40)."""
    kept = {}
    for key, value in eva.items():
        block = re.match(r"blocks\.(\d+)\.", key)
        if block and int(block.group(1)) >= num_blocks:
            continue
        kept[key] = value
    biases = {k: kept.pop(k) for k in list(kept) if re.fullmatch(r"blocks\.\d+\.attn\.[qv]_bias", k)}
    ours, unknown = _rename_all(kept, EVA_RENAMES)
    _raise_unknown(unknown, "the EVA-ViT-G weights")
    for block in range(num_blocks):
        q_bias = biases.pop(f"blocks.{block}.attn.q_bias", None)
        v_bias = biases.pop(f"blocks.{block}.attn.v_bias", None)
        if q_bias is not None and v_bias is not None:
            ours[f"vision_tower.model.encoder.layers.{block}.self_attn.qkv.bias"] = torch.cat(
                [q_bias, torch.zeros_like(q_bias), v_bias]
            )
    _raise_unknown(list(biases), "the EVA-ViT-G weights (unpaired q/v biases)")
    key = "vision_tower.model.embeddings.position_embedding"
    if key in ours:
        ours[key] = resize_position_embedding(ours[key], grid)
    return ours


def ours_to_eva(ours: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our vision tower -> LAVIS EVA keys (the inverse of `eva_to_ours` at the model's own grid)."""
    eva = {}
    for key, value in ours.items():
        bias = re.fullmatch(r"vision_tower\.model\.encoder\.layers\.(\d+)\.self_attn\.qkv\.bias", key)
        if bias:
            q_bias, _, v_bias = value.chunk(3)
            eva[f"blocks.{bias.group(1)}.attn.q_bias"] = q_bias
            eva[f"blocks.{bias.group(1)}.attn.v_bias"] = v_bias
            continue
        original = rename_key(key, EVA_RENAMES, reverse=True)
        if original is None:
            raise ConversionError(f"{key} is not a vision tower weight")
        eva[original] = value
    return eva


def merge_instructblip(
    state_dict: Mapping[str, torch.Tensor], instructblip: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Fill the Q-Former, its queries and `ln_vision` from an InstructBLIP file where the LLaMA-VID checkpoint
    lacks them (a model folder that was never trained with them); the checkpoint's own weights win."""
    merged = dict(state_dict)
    for key, value in instructblip.items():
        target = rename_key(key, INSTRUCTBLIP_RENAMES)
        if target is not None and not any(p.match(target) for p in DERIVED_KEYS):
            merged.setdefault(target, value)
    return merged


def original_to_ours(
    state_dict: Mapping[str, torch.Tensor],
    eva: Mapping[str, torch.Tensor] | None,
    config: LlamaVidConfig,
    instructblip: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Original LLaMA-VID (+ EVA, + InstructBLIP) state dicts -> ours. Pure; raises on any unaccounted key."""
    state_dict = {k: v for k, v in state_dict.items() if not any(p.match(k) for p in DERIVED_KEYS)}
    embedded_eva = {
        k[len(EMBEDDED_EVA_PREFIX) :]: state_dict.pop(k)
        for k in list(state_dict)
        if k.startswith(EMBEDDED_EVA_PREFIX)
    }
    if instructblip:
        state_dict = merge_instructblip(state_dict, instructblip)
    ours, unknown = _rename_all(state_dict, LLAMAVID_RENAMES)
    _raise_unknown(unknown, "the LLaMA-VID checkpoint")
    eva = eva if eva is not None else embedded_eva
    if not eva:
        raise ConversionError("No vision tower weights: pass the EVA-ViT-G file (eva_vit_g.pth)")
    ours.update(eva_to_ours(eva, config.vision_config.num_hidden_layers, config.patch_grid_side))
    return ours


def ours_to_original(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    """Ours -> (original LLaMA-VID state dict, EVA state dict): the inverse of `original_to_ours`."""
    vision = {k: v for k, v in state_dict.items() if k.startswith("vision_tower.")}
    rest = {k: v for k, v in state_dict.items() if not k.startswith("vision_tower.")}
    original, unknown = _rename_all(rest, LLAMAVID_RENAMES, reverse=True)
    _raise_unknown(unknown, "our state dict")
    return original, ours_to_eva(vision)


def check_complete(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Every parameter of `model` is given with its shape, and nothing else is."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if state_dict[k].shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} weights: {', '.join(missing[:20])}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} weights: {', '.join(unexpected[:20])}")
    if wrong:
        problems.append(f"wrong shapes: {'; '.join(wrong[:20])}")
    if problems:
        raise ConversionError("The converted weights do not fit the model: " + " | ".join(problems))


# -- configs ---------------------------------------------------------------------------------------------------

LLAMA_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "hidden_act",
    "max_position_embeddings",
    "initializer_range",
    "rms_norm_eps",
    "rope_scaling",
    "rope_theta",
    "tie_word_embeddings",
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "attention_bias",
)


@dataclass
class ArchitectureHints:
    """Sizes the weight files cannot tell: attention heads (defaults: the released EVA-ViT-G and BERT-base), and
    how many EVA blocks to use (default: 39 for EVA-CLIP-g's 40-block file, else every block in the file)."""

    vision_heads: int | None = None
    vision_blocks: int | None = None
    qformer_heads: int | None = None


def _layer_indices(keys, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := re.match(pattern, k))})


def _default(value, width: int, known_width: int, known_value: int, flag: str) -> int:
    if value is not None:
        return value
    if width == known_width:
        return known_value
    raise ConversionError(
        f"Cannot infer the head count of a {width}-wide network from its weights: pass {flag}"
    )


def build_config(
    original: Mapping,
    state_dict: Mapping[str, torch.Tensor],
    eva: Mapping[str, torch.Tensor],
    image_size: int,
    hints: ArchitectureHints | None = None,
    chat_template: str = "vicuna_v1",
) -> LlamaVidConfig:
    """Our config from the original `config.json`, the weight shapes and the image processor's size."""
    hints = hints or ArchitectureHints()
    bert_type = str(original.get("bert_type", ""))
    if "qformer" not in bert_type:
        raise ConversionError(
            f"bert_type {bert_type!r} is not supported: only the Q-Former variants were released"
        )
    projector = original.get("mm_projector_type", "linear")
    if projector not in ("linear", "mlp2x_gelu", "identity"):
        raise ConversionError(
            f"mm_projector_type {projector!r} is not supported (linear, mlp2x_gelu, identity)"
        )
    compress, grid_size = parse_compress_type(original.get("compress_type"))

    width = eva["cls_token"].shape[-1]
    blocks_in_file = len(_layer_indices(eva, r"blocks\.(\d+)\."))
    blocks = hints.vision_blocks or (
        EVA_G_BLOCKS_USED if width == EVA_G_WIDTH and blocks_in_file > 39 else blocks_in_file
    )
    if blocks > blocks_in_file:
        raise ConversionError(f"{blocks} vision blocks asked for, the EVA file has {blocks_in_file}")
    vision = {
        "hidden_size": width,
        "intermediate_size": eva["blocks.0.mlp.fc1.weight"].shape[0],
        "num_hidden_layers": blocks,
        "num_attention_heads": _default(
            hints.vision_heads, width, EVA_G_WIDTH, EVA_G_HEADS, "--vision-heads"
        ),
        "image_size": image_size,
        "patch_size": eva["patch_embed.proj.weight"].shape[-1],
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu",
    }
    prefix = "model.vlm_att_encoder.bert."
    words = state_dict[prefix + "embeddings.word_embeddings.weight"]
    layers = _layer_indices(state_dict, re.escape(prefix) + r"encoder\.layer\.(\d+)\.")
    cross = _layer_indices(state_dict, re.escape(prefix) + r"encoder\.layer\.(\d+)\.crossattention\.")
    qformer = {
        "vocab_size": words.shape[0],
        "hidden_size": words.shape[1],
        "num_hidden_layers": len(layers),
        "num_attention_heads": _default(
            hints.qformer_heads, words.shape[1], BERT_BASE_WIDTH, BERT_BASE_HEADS, "--qformer-heads"
        ),
        "intermediate_size": state_dict[prefix + "encoder.layer.0.intermediate.dense.weight"].shape[0],
        "max_position_embeddings": state_dict[prefix + "embeddings.position_embeddings.weight"].shape[0],
        "cross_attention_frequency": cross[1] - cross[0] if len(cross) > 1 else max(len(layers), 1),
    }
    text = {k: original[k] for k in LLAMA_KEYS if k in original}
    text["model_type"] = "llama"
    return LlamaVidConfig(
        vision_config=vision,
        qformer_config=qformer,
        text_config=text,
        num_query=state_dict["model.vlm_att_query"].shape[1],
        compress=compress,
        grid_size=grid_size,
        pad_to_square=original.get("image_aspect_ratio") == "pad",
        chat_template=chat_template,
        qformer_layernorm="qformer_pretrain" in bert_type,
        projector_type=projector,
        max_sequence_length=int(original.get("max_token") or original.get("max_position_embeddings") or 2048),
    )


def parse_compress_type(value) -> tuple[str, int | None]:
    """The original's `compress_type` string -> (compress, grid_size); parsed only here, at the import boundary."""
    if value in (None, "", "none"):
        return "none", None
    if value == "mean":
        return "mean", None
    match = re.fullmatch(r"grid:(\d+)", str(value))
    if match:
        return "grid", int(match.group(1))
    raise ConversionError(f"compress_type {value!r} is not one of null, 'mean', 'grid:N'")


__all__ = [
    "ArchitectureHints",
    "ConversionError",
    "EVA_RENAMES",
    "INSTRUCTBLIP_RENAMES",
    "LLAMAVID_RENAMES",
    "build_config",
    "check_complete",
    "eva_to_ours",
    "original_to_ours",
    "ours_to_eva",
    "ours_to_original",
    "parse_compress_type",
    "rename_key",
    "resize_position_embedding",
]


# -- files -----------------------------------------------------------------------------------------------------


def load_torch_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A `.bin`/`.pth` state dict read with `weights_only=True` (no code runs); LAVIS files nest it under "model".
    Memory-mapped where the file allows it: tensors are read from disk as they are used."""
    file = WeightFile(path)
    return {key: file[key] for key in file.names()}


def load_original_checkpoint(model_dir: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config.json, merged state dict) of a released model folder: sharded `.bin` + index, a single
    `pytorch_model.bin`, or safetensors. Tensors are memory-mapped where the files allow it."""
    model_dir = Path(model_dir)
    config = _original_config(model_dir)
    weights = ShardedWeights(original_weight_files(model_dir))
    return config, {key: weights[key] for key in weights.meta()}


def _original_config(model_dir: Path) -> dict:
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{model_dir} has no config.json: is it a LLaMA-VID model folder?")
    return json.loads(config_file.read_text())


def _check_parts(model_dir: Path, processor_dir, qformer_vocab) -> tuple[Path, Path]:
    if not (model_dir / "config.json").is_file():
        raise ConversionError(f"{model_dir} has no config.json: is it a LLaMA-VID model folder?")
    qformer_vocab = Path(qformer_vocab) if qformer_vocab else model_dir / "vocab.txt"
    if not qformer_vocab.is_file():
        raise ConversionError(
            "The Q-Former tokenizer needs bert-base-uncased's vocab.txt (30522 lines), which released LLaMA-VID "
            "folders do not contain: download it from the google-bert/bert-base-uncased model repository and pass "
            "it with --qformer-vocab"
        )
    processor_config = Path(processor_dir) / "preprocessor_config.json"
    if not processor_config.is_file():
        raise ConversionError(
            f"{processor_dir} has no preprocessor_config.json: pass the original's llamavid/processor/"
            "clip-patch14-224 (or -336) folder"
        )
    return qformer_vocab, processor_config


RELEASE_AFTER_COPYING = 256 * 1024**2


class _ConversionPlan:
    """The conversion worked out on meta tensors (shapes only): the rename functions above run on them, so their
    checks (unexpected keys, unpaired biases) and `check_complete` (missing keys, shapes) are the same exact
    errors as on real tensors; each output tensor is then made alone from the files it comes from."""

    def __init__(self, model_dir: Path, eva_path, instructblip_path):
        self.model = ShardedWeights(original_weight_files(model_dir))
        self.eva_file = WeightFile(eva_path) if eva_path else None
        self.instructblip_file = WeightFile(instructblip_path) if instructblip_path else None
        self.origin: dict[int, tuple] = {}  # id(meta tensor) -> (reader, key): what each output is renamed from
        self._copied_bytes = 0
        state_dict = self._meta(self.model, self.model.meta())
        self.eva = self._meta(self.eva_file, self.eva_file.meta()) if self.eva_file else None
        self.embedded_eva = {
            k[len(EMBEDDED_EVA_PREFIX) :]: v for k, v in state_dict.items() if k.startswith(EMBEDDED_EVA_PREFIX)
        }
        if self.instructblip_file is not None:
            instructblip = self._meta(self.instructblip_file, self.instructblip_file.meta())
            state_dict = merge_instructblip(state_dict, instructblip)
        self.state_dict = state_dict
        if self.eva_file is not None:
            self.eva_file.release()

    def release_dtype(self) -> torch.dtype:
        """The floating dtype the release folder stores most of its weights in (bfloat16 for LLaMA-VID's): what
        `keep` converts every part to, so that a converted 7B is the size of the release, not twice it in the
        float32 of a freshly built model, with the EVA-ViT-G and InstructBLIP files cast to it."""
        counts: dict[torch.dtype, int] = {}
        for value in self.model.meta().values():
            if value.dtype.is_floating_point:
                counts[value.dtype] = counts.get(value.dtype, 0) + value.numel()
        return max(counts, key=counts.get) if counts else torch.float32

    def _meta(self, reader, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        for key, value in tensors.items():
            self.origin[id(value)] = (reader, key)
        return tensors

    def plan(self, config: LlamaVidConfig, dtype: torch.dtype | None):
        """(model on the meta device, key -> meta tensor of the output's shape and dtype, in saving order)."""
        from .modeling import LlamaVidForConditionalGeneration

        self.config = config
        self.renamed = original_to_ours(self.state_dict, self.eva, config)
        with torch.device("meta"):
            model = LlamaVidForConditionalGeneration(config)
        check_complete(model, self.renamed)
        self.used_eva = self.eva if self.eva is not None else self.embedded_eva
        planned = {}
        for key, target in model.state_dict().items():
            # as load_state_dict into the model, then `.to(dtype)` of its floating-point tensors
            out_dtype = dtype if dtype is not None and target.dtype.is_floating_point else target.dtype
            planned[key] = torch.empty(target.shape, dtype=out_dtype, device="meta")
        self.stored_dtypes = {key: target.dtype for key, target in model.state_dict().items()}
        return model, planned

    def _read(self, meta: torch.Tensor) -> torch.Tensor:
        reader, key = self.origin[id(meta)]
        return reader[key]

    def make(self, key: str, out_dtype: torch.dtype) -> torch.Tensor:
        meta = self.renamed[key]
        source_storage = None
        if id(meta) in self.origin:
            value = self._read(meta)
            source_storage = value.untyped_storage().data_ptr()
        elif key.endswith("self_attn.qkv.bias"):
            block = key.split(".")[4]
            q_bias = self._read(self.used_eva[f"blocks.{block}.attn.q_bias"])
            v_bias = self._read(self.used_eva[f"blocks.{block}.attn.v_bias"])
            value = torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])
        elif key == "vision_tower.model.embeddings.position_embedding":
            value = resize_position_embedding(self._read(self.used_eva["pos_embed"]), self.config.patch_grid_side)
        else:
            raise AssertionError(f"no rule makes {key}")
        stored = self.stored_dtypes[key]
        if value.dtype != stored and not (
            stored == torch.float32 and out_dtype.is_floating_point and value.dtype in (torch.float16, torch.bfloat16)
        ):
            value = value.to(stored)  # the model's own dtype first, as load_state_dict copies; exact widenings skipped
        value = value.to(out_dtype)
        if value.untyped_storage().data_ptr() != source_storage:
            self._copied_bytes += value.nbytes
        return value

    def release_copied_inputs(self) -> None:
        """Unmap the inputs once enough of them was copied (cast or merged) rather than passed on as views: their
        pages are then needed no more, and an unmap costs a re-read of the files' index, so not after each tensor."""
        if self._copied_bytes >= RELEASE_AFTER_COPYING:
            self.release()

    def release(self) -> None:
        self._copied_bytes = 0
        for reader in (self.model, self.eva_file, self.instructblip_file):
            if reader is not None:
                reader.release()


def convert_checkpoint(
    model_dir: str | Path,
    output_dir: str | Path,
    processor_dir: str | Path,
    qformer_vocab: str | Path | None = None,
    eva_path: str | Path | None = None,
    instructblip_path: str | Path | None = None,
    hints: ArchitectureHints | None = None,
    chat_template: str = "vicuna_v1",
    dtype: torch.dtype | None = None,
    max_shard_size: int | str = DEFAULT_SHARD_SIZE,
) -> Path:
    """Convert a released LLaMA-VID model into `output_dir` (see the module docstring); returns `output_dir`.

    Streams: the inputs are memory-mapped and each output shard (at most `max_shard_size`) is made and written
    before the next, so memory stays near one output shard plus the input pages it reads, whatever the model's
    size; no model is built with real weights (the checks use one on the meta device)."""
    from .processing import LlamaVidProcessor, build_qformer_tokenizer, image_processor_from_clip_config

    model_dir, output_dir = Path(model_dir), Path(output_dir)
    qformer_vocab, processor_config = _check_parts(model_dir, processor_dir, qformer_vocab)
    original_config = _original_config(model_dir)
    plan = _ConversionPlan(model_dir, eva_path, instructblip_path)
    if plan.eva is None and not plan.embedded_eva:
        raise ConversionError(
            f"{model_dir} holds no vision tower weights: pass the EVA-ViT-G file with --eva"
        )
    image_processor = image_processor_from_clip_config(processor_config)
    image_size = image_processor.crop_size["height"]
    config = build_config(
        original_config, plan.state_dict, plan.eva or plan.embedded_eva, image_size, hints, chat_template
    )
    model, planned = plan.plan(config, dtype if dtype is not None else plan.release_dtype())

    output_dir.mkdir(parents=True, exist_ok=True)
    write_sharded_safetensors(
        output_dir,
        planned,
        lambda key: plan.make(key, planned[key].dtype),
        total_parameters=model.num_parameters(),
        max_shard_size=max_shard_size,
        after_tensor=plan.release_copied_inputs,
        after_shard=plan.release,
    )
    # what save_pretrained writes beside the weights
    first_float = next(v.dtype for v in planned.values() if v.dtype.is_floating_point)
    model.config.dtype = str(first_float).split(".")[1]
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(output_dir)
    if model.can_generate():
        model.generation_config.save_pretrained(output_dir)

    tokenizer = None
    if any((model_dir / name).exists() for name in ("tokenizer.model", "tokenizer.json")):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    else:
        logger.warning("%s has no LLM tokenizer files; the converted folder will have none", model_dir)
    processor = LlamaVidProcessor(image_processor, tokenizer, build_qformer_tokenizer(qformer_vocab), config)
    processor.save_pretrained(output_dir)
    return output_dir
