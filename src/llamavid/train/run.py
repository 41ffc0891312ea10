"""Running a recipe: build the starting model, run its prepare steps, each stage through `LlamaVidTrainer`, evaluation.

Each stage writes `<output_dir>/<stage name>/` (the final weights; checkpoints inside, resumed automatically
as in the original when `checkpoint-*` folders exist, unless they were trained with other settings; a checkpoint
a killed or disk-full save left torn is set aside as `incomplete-checkpoint-N`, see `checkpoints`). A stage
with `init_adapter: previous` loads the adapter the previous stage saved, as the original's stage 2 reads stage
1's `mm_projector.bin`. Stage 3's long context sets linear RoPE scaling (`extend_context`) as the original does.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from pathlib import Path

import torch

from ..atomic_files import write_text_atomically
from ..plugins import MODEL_SOURCES, PREPARE_STEPS, load
from .checkpoints import resumable_checkpoint
from .distributed import (
    distributed_figures,
    is_main_process,
    shards_parameters,
    start_process_group,
    uses_deepspeed,
    wait_for_everyone,
    wraps_for_one_stage,
)
from .recipe import TRAINING_DEFAULTS, ModelSource, Recipe, RecipeError, StageRun
from .settings_record import changed_settings, field_defaults, settings_json

logger = logging.getLogger(__name__)


def build_model(source: ModelSource, recipe: Recipe, only: str | None = None):
    """(model, processor) to start from, in the dtype its stages train in (`starting_dtype`)."""
    torch.manual_seed(recipe.seed)
    dtype = starting_dtype(recipe, only)
    if source.path:
        from ..inference.loading import load_model

        model, processor = load_model(source.path, device="cpu", dtype=dtype)
    elif source.source:
        model, processor = load(MODEL_SOURCES, source.source)(dict(source.settings), recipe, dict(source.config))
    else:
        model, processor = compose_stages(source, dtype)
    if source.reset_projectors:
        reset_projectors(model)
    return model, processor


def starting_dtype(recipe: Recipe, only: str | None = None) -> torch.dtype:
    """bfloat16 (float16) when every stage to run trains under DeepSpeed with `bf16` (`fp16`), else float32.

    DeepSpeed keeps float32 master weights in its optimiser and trains the 16-bit model, as the original's
    `from_pretrained(torch_dtype=bfloat16)` did: a float32 start would only cost every rank twice the host
    memory (28 GB for 7B) before the engine casts it down. Without DeepSpeed the Trainer's `bf16` is autocast
    over float32 weights, which must then start in float32."""
    runs = [run for run in recipe.stages if only in (None, run.name)]
    for flag, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        if runs and all(uses_deepspeed(run.training) and run.training.get(flag) for run in runs):
            return dtype
    return torch.float32


PROJECTORS = ("query_projector", "key_projector", "context_projector", "content_projector")


def reset_projectors(model, names: tuple[str, ...] = PROJECTORS) -> None:
    """Linear layers of the named token-generator projectors back to PyTorch's initialisation."""
    for name in names:
        for layer in getattr(model.token_generator, name).modules():
            if isinstance(layer, torch.nn.Linear):
                layer.reset_parameters()


def compose_stages(source: ModelSource, dtype: torch.dtype = torch.float32):
    """An HF LLM under the vision tower and Q-Former of a llamavid folder (stages 1-2 of the releases).

    The LlamaVid model is built around an LLM without layers, then given the loaded LLM: a 7B LLM is held once
    (not a random one beside the loaded one), in `dtype`."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    from ..inference.loading import load_llm, load_model
    from ..model.configuration import LlamaVidConfig
    from ..model.modeling import LlamaVidForConditionalGeneration
    from ..model.processing import LlamaVidProcessor

    if is_deepspeed_zero3_enabled():
        # zero.Init would partition the new model's parameters as they are made: the shape check below would see
        # (0,) placeholders and skip every Q-Former and vision tensor, the original LLaMA-VID's silent bug
        raise RecipeError(
            "model.llm + model.visual_from cannot be composed while DeepSpeed ZeRO-3's zero.Init is active (a "
            "ZeRO-3 TrainingArguments exists): build the model before making TrainingArguments, as `llamavid "
            "train` does, or compose it once, save it and start from that folder (model.path)"
        )
    visual, visual_processor = load_model(source.visual_from, device="cpu", dtype=dtype)
    llm, tokenizer = load_llm(source.llm, dtype)
    settings = visual.config.to_dict()
    for key in ("text_config", "image_token_id", "architectures", "model_type", "transformers_version"):
        settings.pop(key, None)
    settings.update(source.config)
    config = LlamaVidConfig(text_config=llm.config.to_dict(), **settings)
    skeleton = copy.deepcopy(config)
    skeleton.text_config.num_hidden_layers = 0  # its LLM is replaced at once: only the visual parts are kept
    model = LlamaVidForConditionalGeneration._from_config(skeleton, dtype=dtype)
    model.config = config
    keep = {k: v for k, v in visual.state_dict().items() if not k.startswith("language_model.")}
    own = model.state_dict()
    keep = {k: v for k, v in keep.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(keep, strict=False)
    del visual
    model.language_model = llm
    processor = LlamaVidProcessor(
        visual_processor.image_processor, tokenizer, visual_processor.qformer_tokenizer, config
    )
    return model, processor


def extend_context(model, max_length: int) -> None:
    """The original's stage 3: linear RoPE scaling by ceil(max_length / max_position_embeddings) when the stage needs more."""
    text = model.config.text_config
    # transformers 5 keeps the scaling beside rope_theta in `rope_parameters`; `rope_scaling` is its old name
    parameters = getattr(text, "rope_parameters", None)
    scaling = parameters if isinstance(parameters, dict) else (getattr(text, "rope_scaling", None) or {})
    current = scaling.get("factor", 1.0) or 1.0
    if max_length > text.max_position_embeddings * current:
        factor = float(math.ceil(max_length / text.max_position_embeddings))
        logger.warning(
            "context %d > %d positions: linear RoPE scaling x%g",
            max_length,
            text.max_position_embeddings,
            factor,
        )
        llm_config = model.language_model.config
        for config in {id(text): text, id(llm_config): llm_config}.values():
            if isinstance(parameters, dict):
                config.rope_parameters = {**parameters, "rope_type": "linear", "factor": factor}
            else:
                config.rope_scaling = {"rope_type": "linear", "type": "linear", "factor": factor}
        # a new rotary embedding built from the extended config (its frequencies are computed at construction);
        # get_decoder reaches the LLaMA body through a peft wrapper too
        decoder = model.language_model.get_decoder()
        old = decoder.rotary_emb
        decoder.rotary_emb = type(old)(llm_config).to(old.inv_freq.device)


def training_arguments(run: StageRun, recipe: Recipe, output_dir: Path):
    from transformers import TrainingArguments

    settings = {**TRAINING_DEFAULTS, "seed": recipe.seed, "data_seed": recipe.seed, **run.training}
    settings["output_dir"] = str(output_dir)
    try:
        return TrainingArguments(**settings)
    except TypeError as error:
        raise RecipeError(f"stages.{run.name}.training: {error}") from None


def run_stage(
    model,
    processor,
    run: StageRun,
    recipe: Recipe,
    previous_dir: Path | None,
    resume: bool | str = True,
    media_cache: dict | None = None,
) -> dict:
    """Train one stage in place; returns figures (loss, seconds, data problems).

    `media_cache` (shared between stages by `run_recipe`) keeps decoded media, and with
    `data.cache_vision_features` the frozen tower's features, from one stage to the next."""
    output_dir = Path(recipe.output_dir) / run.name
    trainer, trainable = prepare_stage(model, processor, run, recipe, previous_dir, output_dir, media_cache)
    figures = {"stage": run.name, "trainable_parameters": trainable, **train_stage(trainer, run, recipe, output_dir, resume)}
    save_stage(trainer, model, processor, run, output_dir, figures)
    return figures


def prepare_stage(model, processor, run: StageRun, recipe: Recipe, previous_dir: Path | None, output_dir: Path,
                  media_cache: dict | None):
    """The stage's starting weights, trainable parts, data and trainer: (trainer, number of trainable parameters).
    Recipe mistakes are found here, before any step."""
    from transformers import set_seed

    from .collator import Collator
    from .data import SupervisedDataset
    from .stages import apply_stage, load_adapter
    from .trainer import ADAPTER_FILE, EpochCallback, LlamaVidTrainer

    if run.init_adapter:
        if previous_dir is None and run.init_adapter == "previous":
            raise RecipeError(f"stages.{run.name}.init_adapter=previous but it is the first stage")
        adapter = (previous_dir / ADAPTER_FILE) if run.init_adapter == "previous" else Path(run.init_adapter)
        load_adapter(model, adapter)
    if run.stage.lora is not None and not run.stage.merge_lora and not model.config.base_llm:
        # found now, not after the training: an unmerged LoRA is saved as an adapter folder over `base_llm`
        raise RecipeError(f"stages.{run.name}: stage.merge_lora=false saves an adapter folder, which needs "
                          "model.config.base_llm (the LLM the adapter goes on)")
    if run.stage.lora is not None and run.stage.merge_lora and shards_parameters(run.training):
        # peft merges into the model's own weights, which FSDP and ZeRO-3 hold as shards
        raise RecipeError(f"stages.{run.name}: stage.merge_lora=true cannot merge sharded (FSDP, ZeRO-3) weights; "
                          "set merge_lora: false (an adapter folder) or train LoRA under DDP or ZeRO-2")
    extend_context(model, run.data.model_max_length)
    # the stage's new weights (a LoRA's) start from the recipe's seed, not from whatever the stages before drew
    # in this process: one stage per launch (DeepSpeed, FSDP) then starts as a run of all stages does
    set_seed(recipe.seed)
    trainable = apply_stage(model, run.stage)
    args = training_arguments(run, recipe, output_dir)
    encoder = None
    if run.data.cache_vision_features:
        if run.stage.vision_tower:
            raise RecipeError(f"stages.{run.name}: data.cache_vision_features needs a frozen vision tower")
        # sharded, the tower's parameters are partitioned: the data loader gets a whole copy of its own
        encoder = frozen_encoder(model, private_on=args.device if shards_parameters(run.training) else None)
    dataset = SupervisedDataset(run.data, processor, vision_encoder=encoder, media_cache=media_cache)
    trainer = LlamaVidTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=Collator(processor, run.data.model_max_length),
        callbacks=[EpochCallback(dataset)],
        stage=run.stage,
        group_by_modality_length=run.group_by_modality_length,
        visual_lr_scale=run.visual_lr_scale,
        shared_prefix=run.shared_prefix,
    )
    return trainer, trainable


def train_stage(trainer, run: StageRun, recipe: Recipe, output_dir: Path, resume: bool | str) -> dict:
    """Train from the newest whole checkpoint (`resume=True`), a given one, or the start; the run's figures."""
    checkpoint = resume
    if resume is True:  # the newest whole checkpoint; torn ones (a killed or disk-full save) are set aside
        checkpoint = resumable_checkpoint(output_dir)
        if checkpoint:
            check_resumable(output_dir, run, recipe.seed)
            checkpoint = str(checkpoint)
    output_dir.mkdir(parents=True, exist_ok=True)
    if is_main_process():  # whole or not at all: the other ranks may be reading it in check_resumable
        write_text_atomically(output_dir / STAGE_SETTINGS_FILE, json.dumps(stage_record(run, recipe.seed), indent=1))
    start_cpu, start = time.process_time(), time.perf_counter()
    result = trainer.train(resume_from_checkpoint=checkpoint)
    return {
        "train_loss": result.training_loss,
        "steps": result.global_step,
        "train_s": time.perf_counter() - start,
        "train_cpu_s": time.process_time() - start_cpu,
        "data_problems": dict(trainer.train_dataset.stats),
        "losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
        "distributed": distributed_figures(trainer),
    }


def save_stage(trainer, model, processor, run: StageRun, output_dir: Path, figures: dict) -> None:
    """The stage's result, by every process together: `LlamaVidTrainer.save_result` writes it on the main process
    from the weights the Trainer gathers (FSDP and ZeRO-3 hold shards). Then the model is frozen for the next stage,
    and the other processes wait until the main one has written everything they may read."""
    from .stages import merge_lora

    if run.stage.lora is not None and run.stage.merge_lora:
        merge_lora(model)  # every process: the merged weights are what the Trainer then gathers
    trainer.save_result(output_dir, processor)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    if is_main_process():
        (output_dir / "figures.json").write_text(json.dumps(figures, indent=1))
    wait_for_everyone()  # the next stage (or launch) on any rank reads what the main process saved


STAGE_SETTINGS_FILE = "stage_settings.json"
# Training arguments a resume may change: what is logged or kept, and the length (to extend a finished or
# stopped run, as the Trainer allows).
RESUME_FREE = frozenset({
    "logging_steps", "logging_strategy", "logging_first_step", "disable_tqdm", "report_to", "run_name",
    "save_steps", "save_strategy", "save_total_limit", "dataloader_num_workers", "logging_dir",
    "max_steps", "num_train_epochs",
})


def stage_record(run: StageRun, seed: int) -> dict:
    """What a stage's checkpoints were trained with, as JSON (written beside them)."""
    record = settings_json(run)
    record["training"] = {k: v for k, v in record["training"].items() if k not in RESUME_FREE}
    return {"seed": seed, **record}


def check_resumable(output_dir: Path, run: StageRun, seed: int) -> None:
    """Refuse to resume checkpoints trained with other settings: the Trainer would continue them silently (with
    another step count, learning rate or data), and the weights would come from neither recipe."""
    saved_file = output_dir / STAGE_SETTINGS_FILE
    if not saved_file.is_file():
        logger.warning("%s: resuming checkpoints whose settings were not recorded", output_dir)
        return
    saved, now = json.loads(saved_file.read_text()), stage_record(run, seed)
    changed = changed_settings(saved, now, field_defaults(run))
    if changed:
        raise RecipeError(
            f"{output_dir} holds checkpoints of stage {run.name!r} trained with other settings "
            f"({', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''}); delete its checkpoint-* folders to "
            "train this stage from the start, or restore those settings to resume"
        )


def frozen_encoder(model, private_on: torch.device | str | None = None):
    """The vision tower as a feature function for the data loader: eval mode, no gradients. The loader's pixels
    are CPU float32 and the tower may sit on an accelerator in another dtype: pixels go to the tower, features
    come back to the CPU (where the cache and the collator keep them).

    `private_on`: encode with a copy of the tower on that device, made now, before the Trainer shards the model
    (FSDP, ZeRO-3). Sharded, the model's own tower would need the other ranks to gather its parameters, in the
    middle of their training step. The tower is frozen, so the copy stays equal to it; it costs one tower a rank."""
    private = None
    if private_on is not None:
        private = copy.deepcopy(model.vision_tower).to(private_on).requires_grad_(False)

    @torch.no_grad()
    def encode(pixel_values: torch.Tensor) -> torch.Tensor:
        tower = model.vision_tower if private is None else private
        weight = next(tower.parameters())
        mode = tower.training
        tower.eval()
        try:
            pixels = pixel_values.to(weight.device, weight.dtype)
            features = model.get_vision_features(pixels) if private is None else tower(pixels)
        finally:
            tower.train(mode)
        return features.to("cpu")

    return encode


def run_recipe(recipe: Recipe, only: str | None = None) -> dict:
    """Run the recipe's prepare steps and stages (or `only` the one of that name); returns all figures.

    In a launch of several processes, prepare steps, evaluation and the recipe's `figures.json` happen on the
    main process (the others wait for a prepare step, then reuse what it saved); every process trains the
    stages."""
    check_one_stage_per_launch(recipe, only)
    start_process_group()
    torch.manual_seed(recipe.seed)
    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, processor = build_model(recipe.model, recipe, only)
    figures: dict = {"recipe": recipe.name}
    media_cache: dict = {}  # decoded media (and frozen-tower features), shared by the prepare steps and the stages
    main = is_main_process()
    for name, settings in recipe.prepare.items():
        if only in (None, name):
            step = load(PREPARE_STEPS, name)
            if main:
                figures[name] = step(model, processor, dict(settings), out / name, media_cache, rerun=only == name)
            wait_for_everyone()
            if not main and only is None:  # the main process's result, read back (same settings: reused)
                figures[name] = step(model, processor, dict(settings), out / name, media_cache, rerun=False)
    previous = None
    for run in recipe.stages:
        if only in (None, run.name):
            figures[run.name] = run_stage(model, processor, run, recipe, previous, media_cache=media_cache)
        if run.stage.vision_tower:
            media_cache.clear()  # cached features came from the tower this stage changed
        previous = out / run.name
    if main:
        if recipe.evaluate and only is None:
            figures["evaluation"] = evaluate_recipe(model, processor, recipe.evaluate)
        (out / "figures.json").write_text(json.dumps(figures, indent=1, default=str))
    return figures


def check_one_stage_per_launch(recipe: Recipe, only: str | None) -> None:
    """DeepSpeed and FSDP wrap the model for good (hooks on the parameters, renamed FSDP classes): a second stage
    in the same process would crash in its first backward. Refused before anything trains."""
    runs = [run for run in recipe.stages if only in (None, run.name)]
    wrapped = [run.name for run in runs if wraps_for_one_stage(run.training)]
    if len(runs) > 1 and wrapped:
        commands = ", then ".join(f"--only {run.name}" for run in runs)
        raise RecipeError(
            f"stages {', '.join(wrapped)} train under DeepSpeed or FSDP, which cannot train a second stage in the "
            f"same launch: run one stage per launch ({commands}; a later stage reads the earlier one's output)"
        )


def evaluate_recipe(model, processor, settings: dict) -> dict:
    from .data import read_records
    from .evaluate import evaluate_records

    records = read_records(settings["records"])
    return evaluate_records(
        model, processor, records, settings["video_folder"], batch_size=settings.get("batch_size", 32)
    )


__all__ = [
    "build_model",
    "check_one_stage_per_launch",
    "check_resumable",
    "compose_stages",
    "extend_context",
    "frozen_encoder",
    "run_recipe",
    "run_stage",
    "stage_record",
]
