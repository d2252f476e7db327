"""The `stackslim` command. Each subcommand maps to one library function.

    stackslim info MODEL                       # family, layers, parameters
    stackslim data synth NAME OUT              # build a synthetic data set offline
    stackslim analyze MODEL DATA --out DIR     # similarity matrices, blocks, heatmaps

Errors on bad input print one line naming the input and exit with status 2; Ctrl-C prints
one line and exits with status 130 (finished results are kept; resumable commands resume).
Every command that loads a model takes `--allow-pickle` (off: safetensors only).
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable

COMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable]] = {}


def command(name: str):
    """Register `(add_arguments, run)` for a subcommand."""
    def wrap(pair):
        COMMANDS[name] = pair
        return pair
    return wrap


def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="random:<family>, whisper-tiny.en, whisper-base, a folder or hub id")


def _info_run(ns: argparse.Namespace) -> int:
    from .models import load_encoder

    enc = load_encoder(ns.model)
    print(f"{enc.name}: family {enc.family}, {enc.num_layers} layers, hidden size {enc.hidden_size}, "
          f"encoder parameters {enc.num_params():,} (stack {enc.num_params(stack_only=True):,})")
    return 0


command("info")((_info_args, _info_run))


def _data_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="data_cmd", required=True)
    s = sub.add_parser("synth", help="build a synthetic data set offline (espeak-ng, flite)")
    s.add_argument("name", choices=["synth-commands", "synth-sentences"])
    s.add_argument("out", help="output folder")
    s.add_argument("--n-clips", type=int, default=None, help="number of clips (default: the set's own)")
    s.add_argument("--seed", type=int, default=0)


def _data_run(ns: argparse.Namespace) -> int:
    from .data.synth import synth_main

    synth_main(ns.name, ns.out, ns.n_clips, ns.seed)
    return 0


command("data")((_data_args, _data_run))


def _register_optional() -> None:
    """Subcommands that live in their capability's package (imported lazily)."""
    import importlib

    for module in ("stackslim.similarity.analyze", "stackslim.prune.command",
                   "stackslim.mimic.command", "stackslim.share.command", "stackslim.study.command",
                   "stackslim.export.command"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise
            continue
        command(mod.COMMAND)((mod.add_arguments, mod.run))


def known_errors() -> tuple[type[BaseException], ...]:
    """Error types that mean bad input: printed as one line, exit status 2."""
    from .models.base import EncoderError
    from .results import OutputError

    errs: list[type[BaseException]] = [EncoderError, OutputError, FileNotFoundError]
    for mod, name in (("stackslim.data.audio", "AudioError"), ("stackslim.data.datasets", "DataError"),
                      ("stackslim.similarity.errors", "SimilarityError"),
                      ("stackslim.prune.errors", "PruneError"), ("stackslim.mimic.config", "MimicError"),
                      ("stackslim.runtime", "DeviceError")):
        try:
            errs.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(errs)


def build_parser() -> argparse.ArgumentParser:
    _register_optional()
    parser = argparse.ArgumentParser(prog="stackslim", description=(
        "Find and remove the redundancy in the Transformer stack of speech models."))
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, (add_args, _) in COMMANDS.items():
        p = sub.add_parser(name, help=(add_args.__doc__ or "").strip().split("\n")[0] or None)
        add_args(p)
        if any(a.dest == "model" for a in p._actions):  # every command that loads a model
            p.add_argument("--allow-pickle", action="store_true", help=(
                "accept pickled PyTorch weights (pytorch_model.bin) when a model folder has no "
                "safetensors; unpickling can run code, so only for files you trust (read with "
                "torch.load(weights_only=True) even then)"))
    return parser


def _close_progress_bars() -> None:
    """End the bars an error interrupted, so that the error starts a line of its own."""
    from tqdm.auto import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    from .models.io import pickle_allowed

    ok = False  # set once the command returned: only then do all ranks meet before leaving
    try:
        with pickle_allowed(getattr(ns, "allow_pickle", False)):
            code = int(COMMANDS[ns.cmd][1](ns) or 0)
        ok = True
        return code
    except known_errors() as e:
        _close_progress_bars()
        print(f"stackslim {ns.cmd}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"stackslim {ns.cmd}: interrupted; finished results are kept, rerun to resume",
              file=sys.stderr)
        return 130
    finally:
        from .runtime import shutdown

        shutdown(wait=ok)  # under torchrun: leave the process group cleanly


if __name__ == "__main__":
    sys.exit(main())
