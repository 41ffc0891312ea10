"""`llamavid export-vllm SRC OUT`: a llamavid model folder -> the same folder plus what vLLM reads from it.

* `<image>` and `<video>` become added special tokens of the LLM tokenizer, with the ids just past the text
  vocabulary (`image_token_id` and the next), so a prompt's placeholders are single tokens vLLM can find;
* the tokenizer gets a Jinja chat template written from the model's own template (`ChatTemplate.jinja`), which
  vLLM renders for chat requests; it starts with BOS when the tokenizer adds one (chat requests are tokenized
  without special tokens);
* `video_preprocessor_config.json` names the llamavid video processor, so vLLM decodes videos with our loader;
* the weights and every other file are copied as they are (a converted folder loads unchanged).

Nothing here imports vLLM: the export runs in the main environment too.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from ...errors import UsageError
from ...model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, get_template
from ...model.configuration import LlamaVidConfig
from . import VIDEO_PROCESSOR_TYPE

VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"


def export_for_vllm(source: str | Path, out: str | Path) -> Path:
    """Write the vLLM-ready copy of `source` to `out` (created; must not be `source`). Returns `out`."""
    from transformers import AutoTokenizer

    source, out = Path(source), Path(out)
    if not (source / "config.json").is_file():
        raise UsageError(f"{source}: not a llamavid model folder (no config.json)")
    if out.resolve() == source.resolve():
        raise UsageError("the output folder must differ from the model folder")
    config = LlamaVidConfig.from_pretrained(source)
    if config.base_llm:
        raise UsageError(
            f"{source} holds an adapter over {config.base_llm!r}; vLLM needs the merged LLM weights in the folder"
        )
    shutil.copytree(source, out, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    if len(tokenizer) != config.image_token_id:
        raise UsageError(
            f"{source}: the tokenizer has {len(tokenizer)} tokens but the placeholder id is {config.image_token_id}; "
            "vLLM needs <image> and <video> right after the vocabulary"
        )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER]})
    adds_bos = tokenizer.bos_token_id is not None and tokenizer("a").input_ids[:1] == [tokenizer.bos_token_id]
    tokenizer.chat_template = get_template(config.chat_template).jinja(bos=adds_bos)
    tokenizer.save_pretrained(out)
    (out / VIDEO_PROCESSOR_FILE).write_text(json.dumps({"video_processor_type": VIDEO_PROCESSOR_TYPE}, indent=2))
    return out


__all__ = ["export_for_vllm"]
