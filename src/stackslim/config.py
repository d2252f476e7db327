"""Frozen dataclass configs ↔ command-line flags.

Each config field carries `metadata={"help": ...}`; `add_config_args` turns the fields into
flags (`max_clips` → `--max-clips`), and `config_from_args` builds the config back from the
parsed namespace. One definition of every option, used by the CLI and by Python callers.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per field of the dataclass `cls` (bools become --x / --no-x)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        help_ = f.metadata.get("help", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        tp = hints[f.name]
        if tp is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction,
                                default=default, help=help_)
            continue
        origin = typing.get_origin(tp)
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if origin in (tuple, list):
            parser.add_argument(_flag(f.name), type=lambda s: tuple(x for x in s.split(",") if x),
                                default=default, help=f"{help_} (comma-separated; default: "
                                f"{','.join(map(str, default))})")
            continue
        base = args[0] if args else tp
        conv = base if base in (int, float, str) else str
        choices = f.metadata.get("choices")
        parser.add_argument(_flag(f.name), type=conv, default=default, choices=choices,
                            help=f"{help_} (default: {default})")


def config_from_args(cls: type[T], ns: argparse.Namespace, **override: Any) -> T:
    """Build `cls` from parsed flags; `override` wins."""
    values = {f.name: getattr(ns, f.name) for f in dataclasses.fields(cls) if hasattr(ns, f.name)}
    values.update(override)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values and typing.get_origin(hints[f.name]) is tuple and isinstance(values[f.name], tuple):
            inner = typing.get_args(hints[f.name])
            if inner and inner[0] is int:
                values[f.name] = tuple(int(v) for v in values[f.name])
    return cls(**values)
