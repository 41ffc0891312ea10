"""Training recipes: YAML files describing the model to start from, optional steps before the stages, and the
stages.

```yaml
name: my-run
seed: 0
output_dir: runs/my-run
model:            # where training starts: one of path | llm + visual_from | source
  path: ...       #   a llamavid model folder
  llm: ...        #   an HF causal-LM folder (with tokenizer) or a registered LLM source, put under ...
  visual_from: ...#   ... the vision tower and Q-Former of a llamavid folder
  source: ...     #   a registered model source (entry points `llamavid.model_sources`, e.g. the toy `tiny`)
  settings: {...} #   that source's own settings
  config: {...}   # LlamaVidConfig changes (compress, grid_size, num_query, pad_to_square, chat_template, ...)
prepare:          # optional: registered steps run before the stages (entry points `llamavid.prepare_steps`)
  stage0: {...}   #   e.g. the toy `stage0`, with its settings
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

from ..errors import RecipeError
from ..plugins import MODEL_SOURCES, PREPARE_STEPS, registered
from .data import DataSettings
from .stages import StageSettings

TRAINING_DEFAULTS = {
    # the releases': AdamW, no weight decay, 3% warm-up, cosine, one epoch; save every 1000 steps, keep one.
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
    source: str | None = None
    """A registered model source (entry point group `llamavid.model_sources`)."""
    settings: dict = field(default_factory=dict)
    """The model source's own settings."""
    config: dict = field(default_factory=dict)
    reset_projectors: bool = False
    """Start the query/key/context and content projectors from scratch (stage 1 of the releases)."""

    def __post_init__(self):
        chosen = [name for name in ("path", "llm", "source") if getattr(self, name)]
        if len(chosen) != 1:
            raise RecipeError(
                "model: give exactly one of model.path, model.llm (+ model.visual_from), model.source "
                f"(+ model.settings); got {chosen}"
            )
        if self.llm and not self.visual_from:
            raise RecipeError("model.llm needs model.visual_from (a llamavid folder with the vision tower/Q-Former)")
        if self.visual_from and not self.llm:
            raise RecipeError("model.visual_from is only used with model.llm")
        if self.settings and not self.source:
            raise RecipeError("model.settings belong to a model.source")
        if self.source and self.source not in registered(MODEL_SOURCES):
            raise RecipeError(
                f"model.source {self.source!r} is not a registered model source "
                f"(registered: {', '.join(sorted(registered(MODEL_SOURCES))) or 'none'})"
            )


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
    prepare: dict[str, dict] = field(default_factory=dict)
    """Registered steps (entry point group `llamavid.prepare_steps`) run before the stages, in order, each with
    its settings; their figures and files go under `<output_dir>/<step name>`."""
    evaluate: dict | None = None

    def __post_init__(self):
        steps = registered(PREPARE_STEPS)
        for name, settings in self.prepare.items():
            if name not in steps:
                raise RecipeError(
                    f"prepare.{name} is not a registered step (registered: {', '.join(sorted(steps)) or 'none'})"
                )
            if not isinstance(settings, dict):
                raise RecipeError(f"prepare.{name} must be a mapping of the step's settings")

    def stage(self, name: str) -> StageRun:
        for run in self.stages:
            if run.name == name:
                return run
        raise RecipeError(f"recipe {self.name!r} has no stage {name!r} (stages: {[s.name for s in self.stages]})")


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """`a.b.c=value` assignments on the raw recipe dict (stage lists addressed by name or index)."""
    import yaml

    raw = copy.deepcopy(raw)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"override {item!r} is not key=value")
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
                    raise RecipeError(f"override {key!r}: no list item named {part!r}")
                if last:
                    node[index] = yaml.safe_load(value)
                node = node[index]
                continue
            if not isinstance(node, dict):
                raise RecipeError(f"override {key!r}: {'.'.join(parts[:depth])} is not a mapping")
            if last:
                node[part] = yaml.safe_load(value)
            else:
                node = node.setdefault(part, {})
    return raw


def build_settings(cls, values: dict, where: str):
    """The settings dataclass `cls` from a recipe mapping; unknown fields are an error that lists the known."""
    if not isinstance(values, dict):
        raise RecipeError(f"{where} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecipeError(
            f"{where}: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )
    return cls(**values)


def _stage(values: dict, where: str) -> StageSettings:
    values = dict(values or {})
    preset = values.pop("preset", None)
    if preset is not None:
        return StageSettings.preset(preset, **values)
    return build_settings(StageSettings, values, where)


def recipe_from_dict(raw: dict, base_dir: str | Path = ".") -> Recipe:
    """A typed recipe; relative paths stay relative to the working directory (as on the command line)."""
    if not isinstance(raw, dict):
        raise RecipeError("a recipe is a YAML mapping")
    raw = dict(raw)
    missing = [k for k in ("name", "model", "stages") if k not in raw]
    if missing:
        raise RecipeError(f"recipe: missing {', '.join(missing)}")
    stages = []
    for number, stage in enumerate(raw.pop("stages") or []):
        stage = dict(stage)
        where = f"stages[{number}]"
        for key in ("name", "data"):
            if key not in stage:
                raise RecipeError(f"{where}: missing {key}")
        stages.append(
            StageRun(
                name=stage.pop("name"),
                stage=_stage(stage.pop("stage", {"preset": "stage2"}), f"{where}.stage"),
                data=build_settings(DataSettings, stage.pop("data"), f"{where}.data"),
                **stage,
            )
        )
    if not stages and not raw.get("prepare"):
        raise RecipeError("recipe: no stages")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise RecipeError(f"recipe: stage names must be unique, got {names}")
    return Recipe(
        name=raw.pop("name"),
        output_dir=raw.pop("output_dir", f"runs/{Path(str(base_dir)).name}"),
        model=build_settings(ModelSource, raw.pop("model"), "model"),
        stages=stages,
        prepare=dict(raw.pop("prepare", None) or {}),
        **raw,
    )


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    try:
        return recipe_from_dict(apply_overrides(raw, overrides or []), path.parent)
    except RecipeError:
        raise
    except (TypeError, ValueError) as error:  # a settings class refusing a value the recipe gave
        raise RecipeError(f"{path}: {error}") from None


__all__ = [
    "ModelSource",
    "Recipe",
    "RecipeError",
    "StageRun",
    "TRAINING_DEFAULTS",
    "apply_overrides",
    "build_settings",
    "load_recipe",
    "recipe_from_dict",
]
