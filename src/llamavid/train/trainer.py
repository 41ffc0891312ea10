"""The `Trainer` subclass: only what must differ from transformers' Trainer.

* the modality-grouped length sampler of stages 2-3 when `group_by_modality_length`;
* a loss computed on the labelled positions only (logits for the other positions are never built: with a
  large vocabulary the output layer dominates a short-answer step), mean over labelled tokens like the
  original's shifted cross-entropy;
* optionally (`shared_prefix`), the text prefix every sample of the batch shares (BOS + the template's system
  prompt) runs through the LLM once and its keys/values serve the whole batch: the same loss and gradients
  (the prefix attends only to itself), fewer LLM tokens a step;
* stage 1 saves only the visual-token weights (`visual_adapter.safetensors` + config.json, the original's
  `mm_projector.bin`), and can resume from such checkpoints (the original could not);
* checkpoints are written under `.staging/` and renamed into place once whole (see `checkpoints`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback
from transformers.trainer import TRAINER_STATE_NAME

from ..model.transformers_compat import CACHE_KEY
from .checkpoints import publish_checkpoint, staging_root
from .preprocess import IGNORE_INDEX
from .sampler import ModalityLengthSampler
from .stages import ADAPTER_PREFIX, StageSettings, adapter_state_dict, load_adapter

ADAPTER_FILE = "visual_adapter.safetensors"
logger = logging.getLogger(__name__)


class EpochCallback(TrainerCallback):
    """Tells the dataset the epoch, so imgsp_v1's random placeholder placement changes per epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = int(state.epoch or 0)


class LlamaVidTrainer(Trainer):
    _staging: str | None = None  # the folder checkpoints go to while one is being written aside
    _result_processor = None  # set while `save_result` writes the stage's result

    def __init__(self, *args, stage: StageSettings, group_by_modality_length: bool = False,
                 visual_lr_scale: float = 1.0, shared_prefix: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.group_by_modality_length = group_by_modality_length
        self.visual_lr_scale = visual_lr_scale
        self.shared_prefix = shared_prefix
        if shared_prefix and self.args.world_size > 1:
            # the shortcut runs the tower and the LLM outside the wrapped forward: DDP would not see the step,
            # FSDP and DeepSpeed hold sharded or hooked parameters there
            logger.warning("shared_prefix is off in a run of %d processes: full rows instead (same loss)",
                           self.args.world_size)
            self.shared_prefix = False
        # Our loss is a mean over the batch's labelled tokens: let the Trainer scale for gradient accumulation.
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not self.group_by_modality_length:
            return super()._get_train_sampler(train_dataset)
        return ModalityLengthSampler(
            dataset.modality_lengths,
            batch_size=self.args.train_batch_size * self.args.gradient_accumulation_steps,
            world_size=self.args.world_size,
            seed=self.args.seed,
        )

    def create_optimizer(self, model=None):
        """The Trainer's optimiser, with the token generator (`token_generator.*`: Q-Former, queries,
        projectors) at `visual_lr_scale` times the learning rate when that is not 1."""
        if self.optimizer is not None or self.visual_lr_scale == 1.0:
            return super().create_optimizer(model)
        model = self.model if model is None else model
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
        decay = set(self.get_decay_parameter_names(model))
        groups: dict[tuple[bool, bool], list] = {}
        for name, parameter in model.named_parameters():
            if parameter.requires_grad:
                groups.setdefault((ADAPTER_PREFIX in name, name in decay), []).append(parameter)
        lr = optimizer_kwargs.pop("lr", self.args.learning_rate)
        self.optimizer = optimizer_cls(
            [
                {"params": params, "lr": lr * (self.visual_lr_scale if visual else 1.0),
                 "weight_decay": self.args.weight_decay if decayed else 0.0}
                for (visual, decayed), params in groups.items()
            ],
            lr=lr,
            **optimizer_kwargs,
        )
        return self.optimizer

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        targets = labels[:, 1:]  # position t predicts token t + 1
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
        if keep.numel() == 0:  # a fully masked batch (e.g. mismatches): no loss, keep the graph alive
            keep = torch.zeros(1, dtype=torch.long, device=labels.device)
        prefix = self._shared_prefix_length(model, inputs, int(keep[0])) if self.shared_prefix else 0
        if prefix:
            outputs = self._forward_with_shared_prefix(model, inputs, prefix, keep)
        else:
            outputs = model(**inputs, logits_to_keep=keep)
        logits = outputs.logits.float()  # (B, K, V)
        chosen = targets[:, keep]
        if (chosen != IGNORE_INDEX).any():
            loss = F.cross_entropy(logits.flatten(0, 1), chosen.flatten(), ignore_index=IGNORE_INDEX)
        else:
            loss = logits.sum() * 0.0
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _shared_prefix_length(model, inputs, first_kept: int) -> int:
        """Leading columns identical in every row (no padding, no placeholder) and before the first position
        whose logits are needed; 0 where the shortcut does not apply (one row, LoRA/peft, a wrapped model)."""
        input_ids, mask = inputs["input_ids"], inputs.get("attention_mask")
        if input_ids.shape[0] < 2 or not hasattr(model, "embed_inputs"):
            return 0
        if type(model.language_model).__name__.startswith("Peft"):
            return 0
        same = (input_ids == input_ids[:1]).all(dim=0) & (input_ids[0] != model.config.image_token_id)
        if mask is not None:
            same &= mask.bool().all(dim=0)
        length = int(same.long().cumprod(dim=0).sum())
        return max(0, min(length, first_kept, input_ids.shape[1] - 1))

    @staticmethod
    def _forward_with_shared_prefix(model, inputs, prefix: int, keep: torch.Tensor):
        from transformers import DynamicCache

        inputs = dict(inputs)
        input_ids = inputs.pop("input_ids")
        mask = inputs.pop("attention_mask", None)
        visual = model.visual_tokens_from_inputs(inputs)
        embeds = model.embed_inputs(input_ids, visual)
        batch, length = input_ids.shape
        llm = model.language_model
        cache = DynamicCache(config=llm.config)
        llm.model(inputs_embeds=embeds[:1, :prefix], use_cache=True, **{CACHE_KEY: cache})
        for layer in cache.layers:  # one row's keys/values, seen by every row (gradients sum back)
            layer.keys = layer.keys.expand(batch, -1, -1, -1)
            layer.values = layer.values.expand(batch, -1, -1, -1)
        if mask is None:
            mask = torch.ones_like(input_ids)
        positions = torch.arange(prefix, length, device=input_ids.device).expand(batch, -1)
        return llm(
            inputs_embeds=embeds[:, prefix:],
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=keep - prefix,
            **{CACHE_KEY: cache},
        )

    def save_result(self, output_dir, processor) -> None:
        """The stage's result in `output_dir`; every process calls it. `save_model` gathers the weights (FSDP and
        ZeRO-3 hold shards) and hands them to `_save` on the process that saves, so the result, like each
        checkpoint, is written once and whole."""
        self._result_processor = processor
        try:
            self.save_model(str(output_dir))
        finally:
            self._result_processor = None

    def _save(self, output_dir=None, state_dict=None):
        """Every save, checkpoints and the result alike, runs here on the saving process with the state dict the
        Trainer gathered (None without sharding: the model's own). What it writes follows the stage: the
        token generator's weights (adapter_only), an adapter folder (the result of an unmerged LoRA), or the
        whole model (with the processor, for the result)."""
        if not self.args.should_save:
            return None
        output_dir = output_dir or self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        processor = self._result_processor
        if self.stage.adapter_only:
            from safetensors.torch import save_file

            os.makedirs(output_dir, exist_ok=True)
            save_file(adapter_state_dict(model, state_dict), os.path.join(output_dir, ADAPTER_FILE))
            model.config.save_pretrained(output_dir)
            with open(os.path.join(output_dir, "stage.json"), "w") as handle:
                json.dump({"stage": self.stage.name, "adapter_only": True}, handle)
        elif processor is not None and self.stage.lora is not None and not self.stage.merge_lora:
            from ..inference.adapter_folder import save_adapter_model

            save_adapter_model(model, processor, output_dir, state_dict)
        else:
            super()._save(output_dir, state_dict)
            if processor is not None:
                processor.save_pretrained(output_dir)
        return None

    def _get_output_dir(self, trial):
        return self._staging or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial):
        """The Trainer's own checkpoint save, pointed at `<run dir>/.staging`, then renamed to `checkpoint-N`
        once every process has written its part; rotation (`save_total_limit`) then runs on the real folder."""
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = Path(super()._get_output_dir(trial))
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staged, final = staging_root(run_dir) / name, run_dir / name
        self._staging = str(staged.parent)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging = None
        self.accelerator.wait_for_everyone()  # DeepSpeed and FSDP shards come from every process
        if not self.args.should_save:
            return
        if self.state.best_model_checkpoint == str(staged):  # this step is the best: record where it will be
            self.state.best_model_checkpoint = str(final)
            self.state.save_to_json(str(staged / TRAINER_STATE_NAME))
        publish_checkpoint(staged, final)
        rotate_checkpoints(
            output_dir=str(run_dir),
            save_total_limit=self.args.save_total_limit,
            best_model_checkpoint=self.state.best_model_checkpoint,
            use_mtime=True,
        )

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        adapter = os.path.join(resume_from_checkpoint, ADAPTER_FILE)
        if os.path.isfile(adapter):
            load_adapter(model or self.model, adapter)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)


__all__ = ["ADAPTER_FILE", "EpochCallback", "LlamaVidTrainer"]
