"""Named extensions, found through Python entry points, so the core never imports what plugs into it.

Three groups: `llamavid.llm_sources` (a name -> a function returning a causal LM and its tokenizer, for
`base_llm` and `model.llm`), `llamavid.model_sources` (a name -> a function building a recipe's starting model)
and `llamavid.prepare_steps` (a name -> a step a recipe runs before its stages). llamavid's own toy machinery
registers itself this way in `pyproject.toml`; another installed package can add names of its own.
"""

from __future__ import annotations

from importlib.metadata import entry_points

LLM_SOURCES = "llamavid.llm_sources"
MODEL_SOURCES = "llamavid.model_sources"
PREPARE_STEPS = "llamavid.prepare_steps"


def registered(group: str) -> dict:
    """name -> entry point of `group` (loaded on use)."""
    return {point.name: point for point in entry_points(group=group)}


def load(group: str, name: str):
    """The object registered as `name` in `group`, or None."""
    point = registered(group).get(name)
    return None if point is None else point.load()


__all__ = ["LLM_SOURCES", "MODEL_SOURCES", "PREPARE_STEPS", "load", "registered"]
