"""Writing results safely: atomic files, output folders, the run's provenance.

Every result goes to a temporary name in the same folder and is renamed into place, so a
killed run never leaves a file that looks finished.
"""
from __future__ import annotations

import errno
import json
import math
import os
import platform
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator
from .errors import OutputError



def prepare_out_dir(path: str | os.PathLike) -> Path:
    """Create `path` as a folder (parents too) and check it is writable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output {str(p)!r} exists and is not a folder")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=p, prefix=".probe-", delete=True)
        probe.close()
    except OSError as e:
        raise OutputError(f"output folder {str(p)!r} is not writable ({e.strerror})") from e
    return p


def _clean(obj: Any) -> Any:
    """JSON-ready copy; refuses NaN/inf so that no silent NaN reaches a results file."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return _clean(asdict(obj))
    if hasattr(obj, "to_json") and callable(obj.to_json):
        return _clean(obj.to_json())
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch
        return _clean(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"refusing to write a non-finite number ({obj}) to a results file")
    return obj


# errno values that mean "this location cannot be written": disk full, quota, file size
# limit, read-only file system, permissions, device error
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM,
                 errno.EIO}
_OS_ERROR = re.compile(r"os error (\d+)|\[Errno (\d+)\]")
# what torch's zip writer says when a write fails (it gives no errno)
_TORCH_WRITE = ("file write failed", "unexpected pos")


def write_failure(e: BaseException) -> str | None:
    """Why `e` is a failure to write (disk full, quota, permissions, ...), or None if it is not.

    Recognises OSError and the errors of writers that wrap one in their message: safetensors
    ("... (os error 28)") and torch.save ("file write failed", "unexpected pos").
    """
    if isinstance(e, OSError) and e.errno is not None:
        return (e.strerror or os.strerror(e.errno)) if e.errno in _WRITE_ERRNOS else None
    msg = str(e)
    m = _OS_ERROR.search(msg)
    if m:
        code = int(m.group(1) or m.group(2))
        return os.strerror(code) if code in _WRITE_ERRNOS else None
    if isinstance(e, RuntimeError) and any(t in msg for t in _TORCH_WRITE):
        return "write failed (disk full or file size limit?)"
    return None


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """Turn a failure to write inside the block into `OutputError` naming `path`.

        with writing(out / "model.pt") as p:
            torch.save(obj, p)          # disk full -> OutputError("cannot write .../model.pt: ...")

    The caller still removes what it half-wrote (write_atomic and atomic_dir do).
    """
    p = Path(path)
    try:
        yield p
    except OutputError:
        raise
    except Exception as e:
        reason = write_failure(e)
        if reason is None:
            raise
        raise OutputError(f"cannot write {p}: {reason}") from e


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file and a rename.

    Raises:
        OutputError: the disk is full, the folder is not writable, ... (names `path`); the
            temporary file is removed and `path` is left as it was.
    """
    p = Path(path)
    with writing(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", dir=p.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are ordinary files
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return p


def follow_umask(root: str | os.PathLike) -> None:
    """Give `root` and everything under it the modes the umask gives new files and folders.

    Some writers create files 0600 whatever the umask (mkstemp, safetensors, mkdtemp); a saved
    model or result must be as readable as the user's other files. An executable keeps its
    execute bits (as far as the umask allows).
    """
    mask = _umask()
    root = Path(root)
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        if p.is_dir() or (p.stat().st_mode & 0o100):
            os.chmod(p, 0o777 & ~mask)
        else:
            os.chmod(p, 0o666 & ~mask)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomic JSON with NaN refused."""
    return write_atomic(path, json.dumps(_clean(obj), indent=2) + "\n")


def provenance() -> dict:
    """Versions and machine, stored beside every result."""
    import numpy
    import torch
    import transformers

    from . import __version__

    return {
        "stackslim": __version__, "torch": torch.__version__,
        "transformers": transformers.__version__, "numpy": numpy.__version__,
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
    }


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder under a temporary name beside `path`; on success it replaces `path`.

    Temporary folders of the same target left by a killed run are removed first. Files in it
    get the umask's modes (`follow_umask`). A failure to write (disk full, permissions) raises
    `OutputError` naming `path`, and the temporary folder is removed: `path` stays as it was.

        with atomic_dir(out / "model") as tmp:
            save_things(tmp)          # a crash here leaves `out / "model"` as it was
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output {str(p)!r} exists and is not a folder")
    with writing(p):
        p.parent.mkdir(parents=True, exist_ok=True)
        for stale in p.parent.glob(f".{p.name}.*"):  # left by a run that was killed while saving
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.parent))
        try:
            yield tmp
            follow_umask(tmp)  # mkdtemp and safetensors make 0700 / 0600
            if p.exists():
                shutil.rmtree(p)
            os.replace(tmp, p)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
