"""Writing results safely: atomic files, output folders, the run's provenance.

Every result goes to a temporary name in the same folder and is renamed into place, so a
killed run never leaves a file that looks finished.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterator


class OutputError(ValueError):
    """An output location stackslim cannot write to."""


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


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` through a temporary file and a rename."""
    p = Path(path)
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

    Temporary folders of the same target left by a killed run are removed first.

        with atomic_dir(out / "model") as tmp:
            save_things(tmp)          # a crash here leaves `out / "model"` as it was
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputError(f"output {str(p)!r} exists and is not a folder")
    p.parent.mkdir(parents=True, exist_ok=True)
    for stale in p.parent.glob(f".{p.name}.*"):  # left by a run that was killed while saving
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", dir=p.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())
        if p.exists():
            shutil.rmtree(p)
        os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
