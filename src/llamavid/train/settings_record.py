"""Comparing the settings a run was trained with (saved as JSON beside it) with the settings of a rerun.

Stage 0 is reused, and a stage's checkpoints resumed, only when nothing changed. A setting added to the code after
a run was saved is missing from its record: it counts as unchanged when the rerun keeps its default, since the old
run did what the default does (otherwise every new option would retrain stage 0 or block every resume)."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, fields, is_dataclass


def settings_json(instance) -> dict:
    """A dataclass instance's settings as the JSON its record holds (what a saved record is compared with)."""
    return json.loads(json.dumps(asdict(instance), default=str))


def field_defaults(instance) -> dict:
    """The defaults of a dataclass instance's fields, as JSON values; nested dataclasses by their own fields."""
    defaults = {}
    for spec in fields(instance):
        value = getattr(instance, spec.name)
        if is_dataclass(value):
            defaults[spec.name] = field_defaults(value)
        elif spec.default is not MISSING:
            defaults[spec.name] = spec.default
        elif spec.default_factory is not MISSING:
            defaults[spec.name] = spec.default_factory()
    return json.loads(json.dumps(defaults, default=str))


def changed_settings(saved, now, defaults=None, prefix: str = "") -> list[str]:
    """`key: old -> new` for every setting that differs, keys dotted; a key missing from `saved` whose value in
    `now` is its default (from `defaults`, shaped like `now`) is not a change."""
    if isinstance(saved, dict) and isinstance(now, dict):
        defaults = defaults if isinstance(defaults, dict) else {}
        changes = []
        for key in sorted(saved.keys() | now.keys()):
            if key not in saved and key in defaults and now[key] == defaults[key]:
                continue
            changes += changed_settings(saved.get(key), now.get(key), defaults.get(key), f"{prefix}{key}.")
        return changes
    return [] if saved == now else [f"{prefix[:-1]}: {saved!r} -> {now!r}"]


__all__ = ["changed_settings", "field_defaults", "settings_json"]
