"""Training for LLaMA-VID: the released three-stage recipe (alignment, instruction tuning, long video), plus a
stage 0 that pretrains a tiny vision tower for toy models.

* `preprocess`: per-template input ids, labels and Q-Former prompts;
* `data`: lazily loaded LLaVA-format datasets (images, videos, long-video feature files) with counted errors;
* `collator`: truncation, placeholder expansion, padding, media batching;
* `stages`: which modules train in each stage, as a typed setting;
* `sampler`, `trainer`: the modality-grouped length sampler and the `Trainer` subclass;
* `recipe`, `run`, `cli`: YAML recipes and `llamavid train RECIPE.yaml [key=value ...]`;
* `synthetic`, `stage0`, `tiny`: the moving-shapes video QA set, vision pretraining and tiny models.

Heavy imports (transformers' Trainer, peft) stay inside the modules that need them.
"""
