"""The toy machinery's part in training recipes, plugged in by name (entry points in `pyproject.toml`):

* model source `tiny` (`model: {source: tiny, settings: {...}}`): a toy-sized LLaMA-VID with tokenizers trained
  on the recipe's own data, or, with `settings.llm` (an HF folder or `smollm2`), a real LLM under toy-sized
  vision parts; `settings.vision_tower` loads stage-0 weights;
* prepare step `stage0` (`prepare: {stage0: {...}}`): pretrain the toy vision tower (and the Q-Former's
  grounding) before the stages (`llamavid.toy.stage0`). A rerun with the same settings and tower config reuses
  the trained tower, unless the run asks for this step alone (`--only stage0`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def _corpus(recipe) -> list[str]:
    """Tokenizer training text: every record rendered as its stage's template renders it (the system prompt and
    role names as often as training sees them, so BPE merges them into few tokens) and the raw messages, plus
    every template's fixed text."""
    from ..model.chat_templates import TEMPLATES
    from ..train.data import read_records

    lines = [t.system for t in TEMPLATES.values() if t.system] + ["USER: ASSISTANT: </s>"]
    for run in recipe.stages:
        template = TEMPLATES.get(run.data.template)
        for record in read_records(run.data.data_path):
            messages = [m["value"].replace("<image>", "").strip() for m in record["conversations"]]
            lines += messages
            if template is not None and template.style != "plain":
                roles = ["user" if m["from"] == "human" else "assistant" for m in record["conversations"]]
                lines.append(template.render(list(zip(roles, messages, strict=True)), False))
    return lines


def build_tiny_model(settings: dict, recipe, config_changes: dict):
    """(model, processor) of the `tiny` model source; `settings` are `tiny_llamavid_config`'s sizes plus `llm`,
    `vocab_size` and `vision_tower`."""
    from ..inference.llm_sources import load_llm
    from ..model.modeling import LlamaVidForConditionalGeneration
    from ..model.processing import LlamaVidProcessor
    from ..train.run import reset_projectors
    from .stage0 import load_vision_tower
    from .tiny import (
        tiny_image_processor,
        tiny_llamavid_config,
        train_qformer_tokenizer,
        train_sentencepiece_llama_tokenizer,
    )

    sizes = dict(settings)
    llm_name, vocab, tower = sizes.pop("llm", None), sizes.pop("vocab_size", 512), sizes.pop("vision_tower", None)
    corpus = _corpus(recipe)
    qformer_tokenizer = train_qformer_tokenizer(corpus, Path(recipe.output_dir) / "qformer_tokenizer")
    llm = None
    if llm_name:  # a real LLM under toy-sized vision parts
        llm, tokenizer = load_llm(llm_name)
        sizes = {k: v for k, v in sizes.items() if not k.startswith("text_")}
        config = tiny_llamavid_config(
            len(tokenizer), len(qformer_tokenizer), text_config=llm.config.to_dict(), **sizes, **config_changes
        )
    else:
        tokenizer = train_sentencepiece_llama_tokenizer(corpus, vocab, Path(recipe.output_dir) / "tokenizer")
        config = tiny_llamavid_config(len(tokenizer), len(qformer_tokenizer), **sizes, **config_changes)
    model = LlamaVidForConditionalGeneration(config)
    _init_small(model, reset_projectors)
    if llm is not None:
        model.language_model = llm
    processor = LlamaVidProcessor(tiny_image_processor(config.image_size), tokenizer, qformer_tokenizer, config)
    if tower:
        load_vision_tower(model, tower)
    return model, processor


def _init_small(model, reset_projectors) -> None:
    """Normal(0, 0.02) linears and tables, unit LayerNorms: a GPT-style init that trains from scratch.

    The query and key projectors keep PyTorch's Linear init instead, as the original's freshly built projectors
    do: attention scores are a product of the two, and with both at 0.02 a weak cue (an object named by its
    shape alone) is learnt only after a long plateau."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2 or name.endswith("query_tokens"):
                torch.nn.init.normal_(parameter, std=0.02)
            elif "norm" in name.lower() and name.endswith("weight"):
                parameter.fill_(1.0)
            else:
                parameter.zero_()
    reset_projectors(model, ("query_projector", "key_projector"))


def run_stage0(model, processor, settings: dict, output_dir: Path, media_cache: dict, rerun: bool) -> dict:
    """The `stage0` prepare step: figures of the trained (or reused) tower."""
    from ..train.recipe import RecipeError, build_settings
    from .stage0 import Stage0Settings, finished_stage0, load_vision_tower, pretrain_vision

    try:
        stage0 = build_settings(Stage0Settings, settings, "prepare.stage0")
    except ValueError as error:
        raise RecipeError(str(error)) from None
    done = None if rerun else finished_stage0(output_dir, stage0, model.config)
    if done is not None:
        logger.info("stage0: reusing %s (trained with the same settings and tower config)", output_dir)
        load_vision_tower(model, output_dir)
        return {**done, "reused": True}
    return pretrain_vision(model, processor, stage0, output_dir, media_cache)


def two_stage_recipe(data: Path, out: Path, stage2: dict | None = None, **training) -> dict:
    """A recipe (as a dict) of a very small LLaMA-VID on a synthetic set `data` (`llamavid make-synthetic`):
    stage 1 (frozen-tower feature cache) then stage 2 from stage 1's adapter, a few constant-rate steps each,
    for tests and benchmarks of the training machinery. `training` changes both stages' TrainingArguments."""
    args = {"max_steps": 3, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 0,
            "save_strategy": "no", "use_cpu": True, "logging_steps": 1, "lr_scheduler_type": "constant",
            "disable_tqdm": True, **training}
    data_settings = {"data_path": str(Path(data) / "train.json"), "video_folder": str(Path(data) / "videos"),
                     "model_max_length": 512, "cache_media": True, "max_frames": 3}
    sizes = {"vocab_size": 600, "image_size": 32, "patch_size": 8, "vision_width": 32, "qformer_width": 32,
             "text_width": 32, "vision_layers": 1, "text_layers": 1}
    return {
        "name": "toy",
        "seed": 0,
        "output_dir": str(out),
        "model": {"source": "tiny", "settings": sizes},
        "stages": [
            {"name": "stage1", "stage": {"preset": "stage1"}, "training": dict(args),
             "data": {**data_settings, "template": "plain_guided", "cache_vision_features": True}},
            {"name": "stage2", "stage": stage2 or {"preset": "stage2"}, "init_adapter": "previous",
             "training": dict(args), "data": {**data_settings, "template": "imgsp_v1"}},
        ],
    }


__all__ = ["build_tiny_model", "run_stage0", "two_stage_recipe"]
