"""Frozen dataclass configs ↔ command-line flags.

Each config field carries `metadata={"help": ...}`; `add_config_args` turns the fields into
flags (`max_clips` → `--max-clips`), and `config_from_args` builds the config back from the
parsed namespace. One definition of every option, used by the CLI and by Python callers.

A field whose type is itself a dataclass (every method's `train: TrainConfig`) contributes its
own fields as flags without a prefix (`--epochs`, `--lr`, `--seed`, ...), with the defaults of
the parent's default instance, so that the shared settings have one name in every command.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _nested(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def add_config_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
                    defaults: Any = None) -> None:
    """Add one flag per field of the dataclass `cls` (bools become --x / --no-x); a nested
    dataclass field adds its own fields' flags (defaults from `defaults`, the parent's value)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        help_ = f.metadata.get("help", "")
        default = getattr(defaults, f.name) if defaults is not None else _default(f)
        tp = hints[f.name]
        if _nested(tp):
            add_config_args(parser, tp, skip, defaults=default)
            continue
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


MODEL_HELP = ("random:<family>, whisper-tiny.en, whisper-base, a folder (one stackslim wrote, a "
              "Hugging Face or CTranslate2 folder) or a hub id in the local cache")
DATA_HELP = "synth-commands, a folder with one sub-folder per label, or a CSV manifest"


def add_method_args(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """The arguments of every method command: MODEL, DATA, --out DIR, then one flag per field
    of its config `cls` (but those named in `skip`)."""
    parser.add_argument("model", help=MODEL_HELP)
    parser.add_argument("data", help=DATA_HELP)
    parser.add_argument("--out", required=True, help="output folder")
    add_config_args(parser, cls, skip)


def config_from_args(cls: type[T], ns: argparse.Namespace, **override: Any) -> T:
    """Build `cls` from parsed flags (nested dataclass fields from their own flags); `override`
    wins."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _nested(tp):
            values[f.name] = config_from_args(tp, ns)
        elif hasattr(ns, f.name):
            v = getattr(ns, f.name)
            if typing.get_origin(tp) is tuple and isinstance(v, tuple):
                inner = typing.get_args(tp)
                if inner and inner[0] is int:
                    v = tuple(int(x) for x in v)
            values[f.name] = v
    values.update(override)
    return cls(**values)

