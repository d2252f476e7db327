"""Resumable steps: each step writes its files under `DIR/<step>/` and, last, a marker
`DIR/<step>/step.json` holding the step's key and its summary.

A step's key has two parts: `inputs`, a hash of the inputs' content (`stackslim.run.fingerprint`
of the model and the data set: clips' paths, sizes, modification times; a model folder's files),
and `options`, a hash of everything else it depends on (its method's config, the keys of the
steps it reads). A rerun with the same key skips the step and returns the stored summary; a
step killed midway has no marker and runs again from the start (its files are each written
atomically, so none looks finished); a changed key reruns the step, with a line saying which
part changed.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable

from tqdm.auto import tqdm

from ..results import write_json

MARKER = "step.json"


def step_key(*parts: Any) -> str:
    """Stable short hash of JSON-able parts (dataclasses by their fields)."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=_plain).encode()).hexdigest()[:16]


def _plain(x: Any) -> Any:
    fields = getattr(x, "__dataclass_fields__", None)
    return {k: getattr(x, k) for k in fields} if fields is not None else str(x)


class StopStudy(Exception):
    """Raised after the step named by `--stop-after`; the next run resumes after it."""


class StepRunner:
    """Runs named steps in order under one progress bar; skips those already done.

    Attributes:
        ran: names of the steps run in this invocation. skipped: names found done.
        keys: step name → its key (for the steps that depend on it).
        stop_after: if set, raise `StopStudy` once that step has finished (for staged runs).
    """

    def __init__(self, out: Path, names: list[str], inputs: str, progress: bool = True,
                 stop_after: str = ""):
        self.out = out
        self.inputs = inputs
        self.progress = progress
        self.bar = tqdm(total=len(names), desc="study", unit="step", disable=not progress)
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.keys: dict[str, str] = {}
        self.stop_after = stop_after

    def run(self, name: str, options: Any, fn: Callable[[Path], dict]) -> dict:
        """`fn(step_dir) -> summary` unless `DIR/name/step.json` holds the same key."""
        folder = self.out / name
        marker = folder / MARKER
        opts = step_key(options)
        key = step_key(self.inputs, opts)
        self.keys[name] = key
        saved = _read(marker)
        if saved is not None and saved.get("key") == key and "summary" in saved:
            self.skipped.append(name)
            self.bar.set_postfix_str(f"{name}: done before")
            self.bar.update(1)
            self._maybe_stop(name)
            return saved["summary"]
        if saved is not None:  # said even with --quiet: results will differ from the last run's
            changed = [what for what, part, now in (("the inputs (model or data set content)", "inputs", self.inputs),
                                                    ("its options", "options", opts))
                       if saved.get(part) != now] or ["its key"]
            tqdm.write(f"study: step {name}: {' and '.join(changed)} changed since it ran; running it again")
        self.bar.set_postfix_str(name)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        summary = fn(folder)
        summary = {**summary, "seconds": round(time.monotonic() - t0, 1)}
        write_json(marker, {"key": key, "inputs": self.inputs, "options": opts, "summary": summary})
        self.ran.append(name)
        self.bar.update(1)
        self._maybe_stop(name)
        return summary

    def _maybe_stop(self, name: str) -> None:
        if self.stop_after and name == self.stop_after:
            self.close()
            raise StopStudy(name)

    def close(self) -> None:
        self.bar.close()


def _read(marker: Path) -> dict | None:
    """The marker's content, or None if missing or unreadable (the step then runs again)."""
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None
