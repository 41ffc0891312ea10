"""The `Trainer` subclass: only what must differ from transformers' Trainer.

* the modality-grouped length sampler of stages 2-3 (spec 4.7) when `group_by_modality_length`;
* a loss computed on the labelled positions only (logits for the other positions are never built: with a
  large vocabulary the output layer dominates a short-answer step), mean over labelled tokens like the
  original's shifted cross-entropy;
* stage 1 saves only the visual-token weights (`visual_adapter.safetensors` + config.json, the original's
  `mm_projector.bin`), and can resume from such checkpoints (the original could not: quirk 21).
"""

from __future__ import annotations

import json
import os

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainerCallback

from .preprocess import IGNORE_INDEX
from .sampler import ModalityLengthSampler
from .stages import StageSettings, adapter_state_dict, load_adapter

ADAPTER_FILE = "visual_adapter.safetensors"


class EpochCallback(TrainerCallback):
    """Tells the dataset the epoch, so imgsp_v1's random placeholder placement changes per epoch."""

    def __init__(self, dataset):
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.epoch = int(state.epoch or 0)


class LlamaVidTrainer(Trainer):
    def __init__(self, *args, stage: StageSettings, group_by_modality_length: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.stage = stage
        self.group_by_modality_length = group_by_modality_length
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

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        targets = labels[:, 1:]  # position t predicts token t + 1
        keep = (targets != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
        if keep.numel() == 0:  # a fully masked batch (e.g. mismatches): no loss, keep the graph alive
            keep = torch.zeros(1, dtype=torch.long, device=labels.device)
        outputs = model(**inputs, logits_to_keep=keep)
        logits = outputs.logits.float()  # (B, K, V)
        chosen = targets[:, keep]
        if (chosen != IGNORE_INDEX).any():
            loss = F.cross_entropy(logits.flatten(0, 1), chosen.flatten(), ignore_index=IGNORE_INDEX)
        else:
            loss = logits.sum() * 0.0
        return (loss, outputs) if return_outputs else loss

    def _save(self, output_dir=None, state_dict=None):
        if not self.stage.adapter_only:
            return super()._save(output_dir, state_dict)
        from safetensors.torch import save_file

        output_dir = output_dir or self.args.output_dir
        if not self.args.should_save:
            return None
        os.makedirs(output_dir, exist_ok=True)
        model = self.accelerator.unwrap_model(self.model)
        save_file(adapter_state_dict(model), os.path.join(output_dir, ADAPTER_FILE))
        model.config.save_pretrained(output_dir)
        with open(os.path.join(output_dir, "stage.json"), "w") as handle:
            json.dump({"stage": self.stage.name, "adapter_only": True}, handle)
        return None

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        adapter = os.path.join(resume_from_checkpoint, ADAPTER_FILE)
        if os.path.isfile(adapter):
            load_adapter(model or self.model, adapter)
            return
        super()._load_from_checkpoint(resume_from_checkpoint, model)


__all__ = ["ADAPTER_FILE", "EpochCallback", "LlamaVidTrainer"]
