"""Which modules train in each stage, as a typed setting (instead of the original's `bert_type` substrings).

Released recipes (the vision tower is always frozen):

| stage | trains | frozen |
|---|---|---|
| 1 alignment | content projector (`mm_projector`), query/key/context projectors | LLM, Q-Former, queries, LN |
| 2 instruction | LLM, content projector, whole Q-Former with queries and LN, the three projectors | - |
| 3 long video | LLM, content projector | Q-Former, queries, LN, the three projectors |

Stage 1 saves only the visual-token weights (`adapter.safetensors`); stage 2 starts from them. LoRA on the LLM
(through peft) replaces full LLM training when `lora` is set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ModelLoadError, RecipeError

# Parameter-name prefixes of the model's parts (see llamavid.model.modeling).
QFORMER_PARTS = (
    "token_generator.qformer.",
    "token_generator.query_tokens",
    "token_generator.vision_layernorm.",
)
PROJECTOR_PARTS = (
    "token_generator.query_projector.",
    "token_generator.key_projector.",
    "token_generator.context_projector.",
)
CONTENT_PARTS = ("token_generator.content_projector.",)
LLM_PARTS = ("language_model.",)
VISION_PARTS = ("vision_tower.",)
ADAPTER_PREFIX = "token_generator."


@dataclass
class LoraSettings:
    """LoRA on the LLM's linear layers (peft)."""

    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self):
        if self.rank < 1:
            raise ValueError(f"stage.lora.rank must be at least 1, got {self.rank}")
        if not self.target_modules:
            raise ValueError("stage.lora.target_modules must name at least one module")


@dataclass
class StageSettings:
    """What trains. Build with `StageSettings.preset("stage1" | "stage2" | "stage3")` or field by field."""

    name: str = "custom"
    vision_tower: bool = False
    qformer: bool = False
    """The Q-Former with its word/position embeddings, the learned queries and the vision LayerNorm."""
    qformer_projectors: bool = False
    """query_projector, key_projector, context_projector (the original's vlm_att_{,key_,val_}projector)."""
    content_projector: bool = True
    llm: bool = False
    lora: LoraSettings | None = None
    adapter_only: bool = False
    """Save only `token_generator.*` (the original's `mm_projector.bin`), as stage 1 does."""
    merge_lora: bool = True
    """Merge the LoRA into the LLM after the stage; false keeps it separate and saves the model without the LLM's
    weights (`llamavid.inference.loading.save_adapter_model`; needs `model.config.base_llm`)."""

    def __post_init__(self):
        if isinstance(self.lora, dict):
            self.lora = LoraSettings(**self.lora)
        if self.lora is not None and self.llm:
            raise ValueError("stage.lora and stage.llm=true conflict: LoRA trains adapters on a frozen LLM")
        if self.adapter_only and (self.llm or self.lora is not None or self.vision_tower):
            raise ValueError(
                "stage.adapter_only saves only token-generator weights, but stage.llm, stage.lora or "
                "stage.vision_tower also train: their weights would be lost"
            )
        if not any(
            (
                self.vision_tower,
                self.qformer,
                self.qformer_projectors,
                self.content_projector,
                self.llm,
                self.lora is not None,
            )
        ):
            raise ValueError(
                "stage trains nothing: set at least one of qformer, qformer_projectors, "
                "content_projector, llm, lora, vision_tower"
            )

    @classmethod
    def preset(cls, name: str, **changes) -> StageSettings:
        presets = {
            "stage1": dict(qformer_projectors=True, content_projector=True, adapter_only=True),
            "stage2": dict(qformer=True, qformer_projectors=True, content_projector=True, llm=True),
            "stage3": dict(content_projector=True, llm=True),
        }
        if name not in presets:
            raise ValueError(f"unknown stage preset {name!r}; use one of {', '.join(presets)}")
        settings = {**presets[name], **changes}
        if settings.get("lora") is not None:
            settings["llm"] = False
        return cls(name=name, **settings)

    def trainable_prefixes(self) -> tuple[str, ...]:
        parts: tuple[str, ...] = ()
        for enabled, prefixes in (
            (self.vision_tower, VISION_PARTS),
            (self.qformer, QFORMER_PARTS),
            (self.qformer_projectors, PROJECTOR_PARTS),
            (self.content_projector, CONTENT_PARTS),
            (self.llm, LLM_PARTS),
        ):
            if enabled:
                parts += prefixes
        return parts


def apply_stage(model, stage: StageSettings):
    """Set `requires_grad` per the stage (and add LoRA adapters); returns the number of trainable parameters."""
    prefixes = stage.trainable_prefixes()
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name.startswith(prefixes))
    if stage.lora is not None:
        from peft import LoraConfig, PeftModel, get_peft_model

        lora = LoraConfig(
            r=stage.lora.rank,
            lora_alpha=stage.lora.alpha,
            lora_dropout=stage.lora.dropout,
            target_modules=list(stage.lora.target_modules),
            bias="none",
        )
        if isinstance(model.language_model, PeftModel):  # an earlier stage's unmerged adapters: train them on
            _check_same_lora(model.language_model.peft_config["default"], lora)
            for name, parameter in model.language_model.named_parameters():
                if "lora_" in name:
                    parameter.requires_grad_(True)
        else:
            model.language_model = get_peft_model(model.language_model, lora)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _check_same_lora(existing, wanted) -> None:
    """A stage continuing an earlier stage's LoRA must ask for the same adapters (a second set on top would be
    trained from zero, and the first one frozen, without anyone having asked for that)."""
    fields = ("r", "lora_alpha", "target_modules")
    mismatched = [f for f in fields if getattr(existing, f) != getattr(wanted, f)]
    if mismatched:
        raise RecipeError(
            "stage.lora differs from the unmerged LoRA of an earlier stage in "
            + ", ".join(f"{f} ({getattr(existing, f)} != {getattr(wanted, f)})" for f in mismatched)
            + "; use the same settings, or merge_lora: true in the earlier stage"
        )


def merge_lora(model) -> None:
    """Fold LoRA adapters into the LLM weights, so the saved model is a plain LLaMA-VID."""
    from peft import PeftModel

    if isinstance(model.language_model, PeftModel):
        model.language_model = model.language_model.merge_and_unload()


def adapter_state_dict(model, gathered: dict | None = None) -> dict:
    """Every `token_generator.*` parameter, frozen ones included (like the original's `mm_projector.bin`).

    `gathered`: the whole state dict an FSDP or ZeRO-3 trainer consolidated, whose tensors stand in for the
    model's own parameters (shards: DTensors, or ZeRO-3's empty (0,) placeholders, the original LLaMA-VID's
    "shape [0]" adapters)."""
    tensors = dict(model.named_parameters()) if gathered is None else gathered
    return {
        name: tensors[name].detach().cpu().contiguous()
        for name, _ in model.named_parameters()
        if name.startswith(ADAPTER_PREFIX) and name in tensors
    }


def _full_shape(parameter):
    """A parameter's shape before sharding: ZeRO-3 leaves a (0,) placeholder and keeps it as `ds_shape`; a
    DTensor (FSDP2) reports its global shape itself."""
    return getattr(parameter, "ds_shape", None) or parameter.shape


def load_adapter(model, path) -> list[str]:
    """Load a stage-1 adapter file into the token generator; returns the loaded names. Every tensor of the file
    must exist in the model with the same shape (a wrong file is an error, not a silent partial load). The model
    may be sharded (FSDP2 DTensors, ZeRO-3 partitions, as when resuming a checkpoint inside the Trainer)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(path))
    own = dict(model.named_parameters())
    problems = [n for n, t in weights.items() if n not in own or _full_shape(own[n]) != t.shape]
    if problems:
        raise ModelLoadError(
            f"{path}: {len(problems)} adapter tensors do not fit this model (first: {problems[0]})"
        )
    targets = [own[name] for name in weights]
    if any(hasattr(parameter, "ds_id") for parameter in targets):
        import deepspeed

        # every rank read the same file; rank 0's copy is the one partitioned back when the context closes
        with deepspeed.zero.GatheredParameters(targets, modifier_rank=0), torch.no_grad():
            for name, tensor in weights.items():
                own[name].copy_(tensor)
    elif any(type(parameter).__name__ == "DTensor" for parameter in targets):
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        set_model_state_dict(model, weights, options=StateDictOptions(full_state_dict=True, strict=False))
    else:
        model.load_state_dict(weights, strict=False)
    return sorted(weights)


__all__ = [
    "LoraSettings",
    "StageSettings",
    "adapter_state_dict",
    "apply_stage",
    "load_adapter",
    "merge_lora",
]
