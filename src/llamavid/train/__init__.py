"""Training for LLaMA-VID: the released three-stage recipe (alignment, instruction tuning, long video). Toy models
and their stage 0 live in `llamavid.toy` and plug in through the recipe's `model.source` and `prepare`.

* `preprocess`: per-template input ids, labels and Q-Former prompts;
* `data`: lazily loaded LLaVA-format datasets (images, videos, long-video feature files) with counted errors;
* `collator`: truncation, placeholder expansion, padding, media batching;
* `stages`: which modules train in each stage, as a typed setting;
* `sampler`, `trainer`: the modality-grouped length sampler and the `Trainer` subclass;
* `recipe`, `run`: YAML recipes and running them (`llamavid train RECIPE.yaml [key=value ...]`);
* `settings_record`: comparing a run's recorded settings with a rerun's (resuming, reusing);
* `evaluate`: the recipes' held-out exact-match evaluation.

Heavy imports (transformers' Trainer, peft) stay inside the modules that need them.
"""
