"""The `stackslim` command. Each subcommand maps 1:1 to one library function.

    stackslim info MODEL                       # family, layers, parameters
    stackslim data synth NAME OUT              # build a synthetic data set offline
    stackslim analyze MODEL DATA --out DIR     # similarity matrices, blocks, heatmaps
    stackslim prune | mimic | share | fit MODEL DATA --out DIR
    stackslim study [MODEL] [DATA] [--quick]   # the whole study with its report

Every subcommand takes `--quiet` (no progress bars) and `--threads N` (CPU threads; default
the STACKSLIM_THREADS environment variable, else torch's own choice), those that write an
output folder `--force` (take over a folder that holds another command's run), those that load
a model `--allow-pickle` (off: safetensors only).

Errors on bad input (`errors.StackslimError`) print one line naming the input and exit with
status 2; Ctrl-C prints one line and exits with status 130 (finished results are kept;
resumable commands resume).
"""
from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

import torch

from . import runtime
from .config import MODEL_HELP
from .data.synth import synth_main
from .errors import StackslimError
from .export import command as export_command
from .fit import command as fit_command
from .mimic import command as mimic_command
from .models import load_encoder
from .models.safety import pickle_allowed
from .prune import command as prune_command
from .results import write_failure
from .share import command as share_command
from .similarity import command as analyze_command
from .study import command as study_command

SYNTH_SETS = ("synth-commands", "synth-sentences", "synth-translate")


def _info_args(p: argparse.ArgumentParser) -> None:
    """family, layers and parameters of a model"""
    p.add_argument("model", help=MODEL_HELP)


def _info_run(ns: argparse.Namespace) -> int:
    enc = load_encoder(ns.model)
    print(f"{enc.name}: family {enc.family}, {enc.num_layers} layers, hidden size {enc.hidden_size}, "
          f"encoder parameters {enc.num_params():,} (stack {enc.num_params(stack_only=True):,})")
    return 0


def _data_args(p: argparse.ArgumentParser) -> None:
    """build a synthetic data set offline"""
    sub = p.add_subparsers(dest="data_cmd", required=True)
    s = sub.add_parser("synth", help="build a synthetic data set offline (espeak-ng, flite)")
    s.add_argument("name", choices=SYNTH_SETS)
    s.add_argument("out", help="output folder")
    s.add_argument("--n-clips", type=int, default=None, help="number of clips (default: the set's own)")
    s.add_argument("--seed", type=int, default=0)


def _data_run(ns: argparse.Namespace) -> int:
    synth_main(ns.name, ns.out, ns.n_clips, ns.seed)
    return 0


class _Command:
    """A subcommand: its flags and the function that runs it."""

    def __init__(self, add_arguments, run) -> None:
        self.add_arguments, self.run = add_arguments, run


def _from_module(m: ModuleType) -> tuple[str, _Command]:
    return m.COMMAND, _Command(m.add_arguments, m.run)


COMMANDS: dict[str, _Command] = dict([
    ("info", _Command(_info_args, _info_run)),
    ("data", _Command(_data_args, _data_run)),
    *(_from_module(m) for m in (analyze_command, prune_command, mimic_command, share_command,
                                study_command, export_command, fit_command)),
])


def _threads(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"--threads must be >= 1, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stackslim", description=(
        "Find and remove the redundancy in the Transformer stack of speech models."))
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=(cmd.add_arguments.__doc__ or "").strip().split("\n")[0] or None)
        cmd.add_arguments(p)
        dests = {a.dest for a in p._actions}
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--threads", type=_threads, default=None, help=(
            "CPU threads for torch (default: $STACKSLIM_THREADS, else torch's own choice)"))
        if "out" in dests:
            p.add_argument("--force", action="store_true", help=(
                "write into an --out that holds another command's run (its files are replaced)"))
        if "model" in dests:  # every command that loads a model
            p.add_argument("--allow-pickle", action="store_true", help=(
                "accept pickled PyTorch weights (pytorch_model.bin) when a model folder has no "
                "safetensors; unpickling can run code, so only for files you trust (read with "
                "torch.load(weights_only=True) even then)"))
    return parser


def set_threads(n: int | None) -> None:
    """Torch's CPU threads, set once for the whole run: `n`, else $STACKSLIM_THREADS."""
    env = os.environ.get("STACKSLIM_THREADS", "")
    if n is None and env:
        try:
            n = _threads(env)
        except (ValueError, argparse.ArgumentTypeError):
            raise StackslimError(f"STACKSLIM_THREADS must be an integer >= 1, got {env!r}") from None
    if n is not None:
        torch.set_num_threads(n)


def _close_progress_bars() -> None:
    """End the bars an error interrupted, so that the error starts a line of its own."""
    from tqdm.auto import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    ok = False  # set once the command returned: only then do all ranks meet before leaving
    try:
        set_threads(ns.threads)
        if ns.quiet:  # transformers' own bars (loading and writing weights) too
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        with pickle_allowed(getattr(ns, "allow_pickle", False)):
            code = int(COMMANDS[ns.cmd].run(ns) or 0)
        ok = True
        return code
    except (StackslimError, FileNotFoundError) as e:
        _close_progress_bars()
        print(f"stackslim {ns.cmd}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # a write that failed where no writer named its file (full $TMPDIR, ...)
        reason = write_failure(e)
        if reason is None:
            raise
        _close_progress_bars()
        where = f" {e.filename}" if getattr(e, "filename", None) else ""
        print(f"stackslim {ns.cmd}: error: cannot write{where}: {reason} (check the free space and "
              "permissions of the output folder and of $TMPDIR)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _close_progress_bars()
        print(f"stackslim {ns.cmd}: interrupted; finished results are kept, rerun to resume",
              file=sys.stderr)
        return 130
    finally:
        runtime.shutdown(wait=ok)  # under torchrun: leave the process group cleanly


if __name__ == "__main__":
    sys.exit(main())
