"""Command-line flags derived from a settings dataclass, so each option is written once: its field.

A field becomes `--field-name` (or its metadata's `flag`), typed by its annotation (`int`, `float`, `str`, `Path`,
optional ones, `list[...]` as a repeatable flag, `bool` as a switch that turns the default around), with its
metadata's `help`, shown with the default, and grouped under its metadata's `group`. Fields whose metadata says
`flag: False` are not flags. The values come back as the dataclass with `settings_from_args`.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path

_SCALARS = (int, float, str, Path)


def _scalar(annotation):
    """The flag's value type: `int | None` -> int, `list[Path]` -> Path."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _scalar(args[0]) if len(args) == 1 else str
    if origin is list:
        return _scalar(typing.get_args(annotation)[0])
    return annotation if annotation in _SCALARS else str


def flag_fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", True) is not False]


def add_settings_flags(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass `cls` (see the module docstring)."""
    hints = typing.get_type_hints(cls)
    groups: dict = {}  # group title -> argument group
    for f in flag_fields(cls):
        if f.name in skip:
            continue
        meta = f.metadata
        target = parser
        if meta.get("group"):
            target = groups.get(meta["group"]) or groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        name = meta.get("flag") or "--" + f.name.replace("_", "-")
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:  # a field the dataclass requires: the command checks that it was given
            default = None if f.default is dataclasses.MISSING else f.default
        help_text = meta.get("help", "")
        annotation = hints[f.name]
        if annotation is bool:
            action = "store_false" if default else "store_true"
            target.add_argument(name, dest=f.name, action=action, default=default, help=help_text)
            continue
        if default is not None and not isinstance(default, list):
            help_text = f"{help_text} (default {default})" if help_text else f"default {default}"
        kwargs = {"dest": f.name, "type": _scalar(annotation), "default": default, "help": help_text}
        if typing.get_origin(annotation) is list:
            kwargs["action"] = "append"
            kwargs["default"] = []
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        target.add_argument(name, **kwargs)


def settings_from_args(args: argparse.Namespace, cls, **values):
    """The dataclass `cls` from the parsed flags; `values` win (fields the command fills in itself)."""
    given = {f.name: getattr(args, f.name) for f in flag_fields(cls) if hasattr(args, f.name)}
    return cls(**{**given, **values})


__all__ = ["add_settings_flags", "flag_fields", "settings_from_args"]
