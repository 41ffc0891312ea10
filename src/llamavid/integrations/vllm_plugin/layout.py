"""Our engine's conversation layout, recovered from a rendered prompt (vLLM hands the plugin the prompt, not the
messages), as `llamavid.inference.inputs.build_sample` lays it out:

* each placeholder's Q-Former prompt is the text of its own user turn without placeholders (`placeholder_prompts`);
* a later user turn without media of its own shows the media of the latest turn that had some again, with its
  own question (`reshow_media` inserts their placeholders, and says which item each placeholder shows). A client
  may also attach the medium to every turn itself: a turn with media of its own is left as it is.
"""

from __future__ import annotations

from ...inference.inputs import strip_placeholders
from ...model.chat_templates import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, ChatTemplate
from ...model.processing import PLACEHOLDER_PATTERN, whole_text_prompt


def placeholder_prompts(prompt: str, template: ChatTemplate) -> list[tuple[str, str]]:
    """(placeholder, Q-Former prompt) for every placeholder of `prompt`, in reading order. A placeholder outside
    every user message (a raw prompt in another format) gets the whole prompt's text without placeholders, as
    `LlamaVidProcessor` does by default."""
    found: list[tuple[str, str]] = []
    rest = prompt
    for message in template.user_messages(prompt):
        start = rest.find(message)
        if start < 0:
            continue
        for skipped in PLACEHOLDER_PATTERN.findall(rest[:start]):
            found.append((skipped, whole_text_prompt(prompt)))
        text = strip_placeholders(message)
        found += [(placeholder, text) for placeholder in PLACEHOLDER_PATTERN.findall(message)]
        rest = rest[start + len(message) :]
    found += [(placeholder, whole_text_prompt(prompt)) for placeholder in PLACEHOLDER_PATTERN.findall(rest)]
    return found


def reshow_media(prompt: str, template: ChatTemplate) -> tuple[str, list[tuple[str, int]]]:
    """(the prompt with the latest media shown again in later user turns that have none, (placeholder, index of
    the item among that placeholder's kind) for every placeholder of the new prompt, in reading order)."""
    counts = {placeholder: 0 for placeholder in MODALITY_PLACEHOLDERS}
    sources: list[tuple[str, int]] = []

    def own(text: str) -> list[tuple[str, int]]:
        found = []
        for placeholder in PLACEHOLDER_PATTERN.findall(text):
            found.append((placeholder, counts[placeholder]))
            counts[placeholder] += 1
        return found

    pieces, shown, done = [], [], 0
    for message in template.user_messages(prompt):
        start = prompt.find(message, done)
        if start < 0:
            continue
        sources += own(prompt[done:start])
        pieces.append(prompt[done:start])
        done = start + len(message)
        mine = own(message)
        if mine:
            shown = mine
        elif shown:
            message = "".join(f"{placeholder}\n" for placeholder, _ in shown) + message
        sources += mine or shown
        pieces.append(message)
    sources += own(prompt[done:])
    pieces.append(prompt[done:])
    return "".join(pieces), sources


MODALITY_PLACEHOLDERS = (IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER)

def text_architectures(text_config) -> list[str]:
    """The causal-LM class names vLLM should build for the LLM: those the text config names, else the one
    transformers maps its model type to (a converted folder's text config may name none), else LLaMA's."""
    if getattr(text_config, "architectures", None):
        return list(text_config.architectures)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(text_config.model_type, "LlamaForCausalLM")]


__all__ = ["placeholder_prompts", "reshow_media", "text_architectures"]
