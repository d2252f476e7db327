"""The run protocol every command uses once: set up, run, write (torchtune's recipe shape).

    run = start_run("prune", out, cfg, model=model, data=data, writes=("pruning.json",
                    "pruning.png", "model"), result="pruning.json")
    enc = run.encoder(model)                 # the teacher (an Encoder passes through)
    task = run.task(data, "word", max_clips=cfg.max_clips, seed=cfg.train.seed)
    ...                                      # the method's own work
    run.write_json("pruning.json", result)   # rank 0 only, atomic
    run.close()                              # (or `with start_run(...) as run:`)

`start_run` does, before anything is loaded:
- joins the torchrun process group (`runtime.init_from_env`); rank 0 alone touches `out`;
- refuses an `out` that is, contains or lies inside an input (the model folder, the data set's
  folder or manifest's folder): a run must never write into what it reads;
- refuses an `out` that holds another command's run (its `config.json` names the command),
  unless `force`;
- takes an advisory lock on `out` (`.stackslim.lock`, held for the run and removed at its end):
  a second run into the same folder fails at once with one line naming the folder and the
  running process;
- removes every file the command writes (`writes`), so that a folder never mixes two runs, and
  the results file first of all (it is written last: its presence marks a finished run);
- writes `config.json` in one shape: command, model, data, config, versions, machine.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import runtime
from .data import AudioDataset
from .errors import OutputError
from .heads import Task, prepare_task
from .models import Encoder, load_encoder
from .results import prepare_out_dir, provenance, write_json

LOCK = ".stackslim.lock"


def _real(p: str | os.PathLike) -> Path:
    return Path(p).expanduser().resolve()


def input_paths(*specs: Any) -> list[Path]:
    """The folders a run reads, for each input given as a path (specs that name no existing
    path, such as ``random:wav2vec2`` or ``synth-commands``, read nothing the user owns). A
    file (a CSV manifest) stands for its folder: clips are read relative to it."""
    out = []
    for s in specs:
        if s is None or not isinstance(s, (str, os.PathLike)):
            continue
        p = Path(s).expanduser()
        if p.exists():
            out.append(_real(p if p.is_dir() else p.parent))
    return out


def check_not_input(out: str | os.PathLike, inputs: Sequence[Path]) -> None:
    """OutputError when `out` is, contains or lies inside one of `inputs`."""
    o = _real(out)
    for i in inputs:
        if o == i or i in o.parents or o in i.parents:
            raise OutputError(f"output folder {str(out)!r} overlaps the input {str(i)!r}: "
                              "give an --out outside every input")


def _lock(out: Path):
    """Hold an exclusive advisory lock on `out` for the run (fcntl: released if the process
    dies). The file records the holder's pid so that the refusal can name it."""
    path = out / LOCK
    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise OutputError(f"output folder {str(out)!r} is in use by a running stackslim "
                          f"({holder}); wait for it or choose another --out") from None
    try:  # the holder before us may have removed the file between our open and our lock
        same = os.path.samestat(os.fstat(f.fileno()), os.stat(path))
    except FileNotFoundError:
        same = False
    if not same:
        f.close()
        raise OutputError(f"output folder {str(out)!r} was in use by another stackslim a moment "
                          "ago; run again")
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f


def _remove(out: Path, names: Sequence[str]) -> list[str]:
    """Remove what an earlier run of the command wrote (glob patterns relative to `out`);
    a link goes, never what it points to. Returns the names removed."""
    gone = []
    for pattern in names:
        for p in sorted(out.glob(pattern)):
            folder = p.is_dir() and not p.is_symlink()
            if folder:
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
            gone.append(str(p.relative_to(out)) + ("/" if folder else ""))
    return gone


@dataclass
class Run:
    """One command's run: where it writes, whether this process writes, what it removed."""

    command: str
    out: Path
    removed: list[str] = field(default_factory=list)
    _lock_file: Any = None

    @property
    def is_main(self) -> bool:
        return runtime.is_main()

    def encoder(self, model: "str | os.PathLike | Encoder") -> "Encoder":
        """The teacher: `model` loaded (an Encoder passes through), in eval mode."""
        enc = model if isinstance(model, Encoder) else load_encoder(model)
        return enc.eval()

    def task(self, data: "str | os.PathLike | AudioDataset", task: str, *, seed: int,
             max_clips: int | None = None) -> "Task":
        """The task's classes and splits on `data` (`heads.prepare_task`)."""
        return prepare_task(data, task, seed=seed, max_clips=max_clips or None)

    def write_json(self, name: str, obj: Any) -> Path | None:
        """Atomic JSON under `out` (rank 0 only; other ranks write nothing)."""
        return write_json(self.out / name, obj) if self.is_main else None

    def close(self) -> None:
        """Release the folder: the lock file goes, then the lock (a run that starts in
        between finds the file gone and says so, see `_lock`)."""
        if self._lock_file is not None:
            (self.out / LOCK).unlink(missing_ok=True)
            self._lock_file.close()
            self._lock_file = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_run(command: str, out: str | os.PathLike, cfg: Any, *, model: Any = None, data: Any = None,
              inputs: Sequence[Any] = (), writes: Sequence[str] = (), force: bool = False) -> Run:
    """Set up `out` for `command` (see the module docstring); returns the Run.

    Args:
        command: the command's name, recorded in config.json.
        out: the output folder.
        cfg: the command's config dataclass (recorded in config.json).
        model, data: the inputs as given (specs, paths or loaded objects).
        inputs: further inputs (paths) the run reads.
        writes: glob patterns of everything the command writes under `out`, the results file
            first; all are removed before the run starts.
        force: take over a folder that holds another command's run.
    """
    runtime.init_from_env()
    check_not_input(out, input_paths(model, data, *inputs))
    run = Run(command=command, out=Path(out))
    if not runtime.is_main():
        return run
    run.out = prepare_out_dir(out)
    run._lock_file = _lock(run.out)
    try:
        _check_owner(run.out, command, force)
        run.removed = _remove(run.out, writes)
        write_json(run.out / "config.json", {
            "command": command, "model": _name(model), "data": _name(data), "config": cfg,
            "versions": provenance()})
    except BaseException:
        run.close()
        raise
    return run


def _name(x: Any) -> str | None:
    if x is None:
        return None
    return str(getattr(x, "name", x))


def _check_owner(out: Path, command: str, force: bool) -> None:
    cfg = out / "config.json"
    if force or not cfg.is_file():
        return
    try:
        owner = json.loads(cfg.read_text()).get("command")
    except (OSError, ValueError, AttributeError):
        owner = None
    if owner is not None and owner != command:
        raise OutputError(f"output folder {str(out)!r} holds a `stackslim {owner}` run; "
                          f"choose another --out, or --force to replace it")


def fingerprint(*inputs: Any) -> str:
    """A short hash of the inputs' content, for resume keys: a data set's clips (path, size,
    modification time), a model folder's files (name, size, modification time), a spec string
    as itself. A changed clip or weight file changes the key; nothing is read in full."""
    h = hashlib.sha1()
    for x in inputs:
        clips = getattr(x, "clips", None)
        if clips is not None:  # an AudioDataset
            for c in clips:
                h.update(_stat(Path(c.path)).encode())
                h.update(f"|{c.label}|{c.speaker}".encode())
            continue
        if isinstance(x, (str, os.PathLike)) and Path(x).expanduser().exists():
            p = Path(x).expanduser()
            files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
            for q in files:
                h.update(_stat(q).encode())
            continue
        h.update(json.dumps(x, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _stat(p: Path) -> str:
    try:
        st = p.stat()
    except OSError:
        return f"{p}:missing"
    return f"{p}:{st.st_size}:{st.st_mtime_ns}"
