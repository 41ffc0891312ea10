"""Each placeholder's Q-Former prompt, recovered from a rendered prompt: the text of its own user turn without
placeholders, exactly what `llamavid.inference.inputs.build_sample` gives it (vLLM hands the plugin the prompt,
not the messages).

Multi-turn: vLLM shows a medium where the client attached it, one item per placeholder. Our engine also shows
the latest medium again in a later user turn that has none; a vLLM client gets the same layout by attaching the
medium to every user turn (each copy then has that turn's question), and a turn without one stays text-only.
"""

from __future__ import annotations

from ...inference.inputs import strip_placeholders
from ...model.chat_templates import ChatTemplate
from ...model.processing import PLACEHOLDER_PATTERN


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
            found.append((skipped, _whole(prompt)))
        text = strip_placeholders(message)
        found += [(placeholder, text) for placeholder in PLACEHOLDER_PATTERN.findall(message)]
        rest = rest[start + len(message) :]
    found += [(placeholder, _whole(prompt)) for placeholder in PLACEHOLDER_PATTERN.findall(rest)]
    return found


def _whole(prompt: str) -> str:
    return PLACEHOLDER_PATTERN.sub("", prompt).strip()


__all__ = ["placeholder_prompts"]
