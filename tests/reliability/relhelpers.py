"""Helpers of the reliability tests: fast command lines, result comparison, runs in a child.

`FAST[cmd]` are the flags that make each command finish in about a second on `random:<family>`
and the 12-clip tone set; `comparable(obj)` drops what legitimately differs between two runs
(timings, latency, versions, paths); `run_forked` runs `stackslim.cli.main` in a forked child
(the parent's imports are reused, so a child costs milliseconds, not the ~8 s of a fresh
interpreter) and can make the child signal itself when a chosen function is called.
"""
from __future__ import annotations

import json
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAST = {
    "analyze": ["--encode-batch", "2", "--checkpoint-every", "2", "--k", "3"],
    "prune": ["--epochs", "2", "--refit-epochs", "1", "--quiet", "--strategies", "forward,bi"],
    "mimic": ["--epochs", "2", "--task-epochs", "2", "--head-epochs", "2", "--hidden", "8",
              "--latency-batch", "1", "--latency-repeats", "1", "--quiet"],
    "share": ["--epochs", "2", "--head-epochs", "2", "--latency-clips", "0", "--wer-clips", "0",
              "--batch-size", "4", "--max-minutes", "0"],
}
RESULT_FILE = {"analyze": "similarity.json", "prune": "pruning.json", "mimic": "mimic.json",
               "share": "share.json"}

# keys whose values differ between two runs of the same computation
VOLATILE = re.compile(r"seconds|latency|provenance|versions|model_dir|_ms$|threads|^device$")


def comparable(obj: Any) -> Any:
    """`obj` without timings, latencies, versions and output paths (recursively)."""
    if isinstance(obj, dict):
        return {k: comparable(v) for k, v in obj.items() if not VOLATILE.search(str(k))}
    if isinstance(obj, list):
        return [comparable(v) for v in obj]
    return obj


def assert_same(a: Any, b: Any, rel: float = 1e-6, where: str = "") -> None:
    """Equal structure, strings, ints and bools; floats equal to `rel` (relative, or absolute
    near 0): a resumed run sums in another order, a child may run other thread counts."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), f"{where}: keys {sorted(a.keys() ^ b.keys())}"
        for k in a:
            assert_same(a[k], b[k], rel, f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), f"{where}: lengths {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, rel, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, (int, float)) and isinstance(b, (int, float)), f"{where}: {a!r} != {b!r}"
        assert abs(a - b) <= rel * max(1.0, abs(a), abs(b)), f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def load_result(out: Path, cmd: str) -> Any:
    return comparable(json.loads((Path(out) / RESULT_FILE[cmd]).read_text()))


def finite_json(path: Path) -> bool:
    """True when the JSON file parses without NaN/Infinity (Python's json accepts them)."""
    def no_const(c: str) -> float:
        raise ValueError(f"{path}: non-finite {c}")
    try:
        json.loads(Path(path).read_text(), parse_constant=no_const)
    except ValueError:
        return False
    return True


@dataclass
class ChildResult:
    exit_code: int | None  # None when killed by a signal
    signal: int | None
    stderr: str
    stdout: str


@dataclass(frozen=True)
class Trigger:
    """In the child, the n-th call of ``owner.attr`` (``owner`` a dotted module or class path)
    sends ``signum`` to the child itself: before the real call, or just after it with ``after``.
    SIGINT raises KeyboardInterrupt right there; SIGKILL ends the child at once, as a kill from
    outside would."""

    owner: str
    attr: str
    n: int
    signum: int
    after: bool = False


def _resolve(dotted: str) -> Any:
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for name in parts[i:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def _arm(t: Trigger) -> None:
    owner = _resolve(t.owner)
    real = getattr(owner, t.attr)
    calls = {"n": 0}

    def wrapped(*a, **k):
        calls["n"] += 1
        if calls["n"] == t.n and not t.after:
            os.kill(os.getpid(), t.signum)
        out = real(*a, **k)
        if calls["n"] == t.n and t.after:
            os.kill(os.getpid(), t.signum)
        return out

    setattr(owner, t.attr, wrapped)


def _child(argv: list[str], out_path: str, err_path: str, trigger: Trigger | None,
           fsize: int | None = None) -> None:
    """Body of the child process: `main(argv)` with stdout/stderr in files; with `fsize`, no
    file may grow beyond that many bytes (RLIMIT_FSIZE: a write fails with EFBIG, as on a full
    disk)."""
    code = 99
    try:
        with open(out_path, "wb") as o, open(err_path, "wb") as e:
            os.dup2(o.fileno(), 1)
            os.dup2(e.fileno(), 2)
        if fsize is not None:
            import resource

            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        import torch

        torch.set_num_threads(1)
        if trigger is not None:
            _arm(trigger)
        from stackslim.cli import main

        code = main(argv)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 98
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


_PRELOAD = ["torch", "transformers", "stackslim.cli", "stackslim.similarity.pipeline", "stackslim.prune.command",
            "stackslim.prune.pipeline", "stackslim.mimic.command", "stackslim.share.command",
            "stackslim.models.random_configs"]


def run_forked(argv: list[str], tmp: Path, trigger: Trigger | None = None,
               timeout: float = 120.0, fsize: int | None = None) -> ChildResult:
    """Run `main(argv)` in a child process; return how it ended and what it printed.

    The child is forked from a fork server that imported stackslim once (a fresh interpreter
    would cost ~8 s per run; a fork of the test process itself can hang in OpenMP).

    Args:
        argv: the command line after `stackslim`.
        tmp: a folder for the child's stdout/stderr files.
        trigger: where the child interrupts itself (None: it runs to the end).
        fsize: the most bytes any file the child writes may hold (a "full disk"), or None.
    """
    import multiprocessing as mp

    tmp.mkdir(parents=True, exist_ok=True)
    out_path, err_path = tmp / "stdout.txt", tmp / "stderr.txt"
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    proc = ctx.Process(target=_child, args=(argv, str(out_path), str(err_path), trigger, fsize))
    proc.start()
    proc.join(timeout)
    if proc.exitcode is None:
        proc.kill()
        proc.join()
        raise TimeoutError(f"child {argv} did not finish in {timeout} s")
    code = proc.exitcode
    return ChildResult(code if code >= 0 else None, -code if code < 0 else None,
                       err_path.read_text(errors="replace"), out_path.read_text(errors="replace"))
