"""Resumable steps: each step writes its files under `DIR/<step>/` and, last, a marker
`DIR/<step>/step.json` holding the step's key (a hash of what it depends on) and its summary.

A rerun with the same key skips the step and returns the stored summary; a step killed midway
has no marker and runs again from the start (its files are each written atomically, so none
looks finished). A changed key (other config or model) reruns the step.
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
    """Stable short hash of JSON-able parts."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class StepRunner:
    """Runs named steps in order under one progress bar; skips those already done.

    Attributes:
        ran: names of the steps run in this invocation. skipped: names found done.
        stop_after: if set, raise `StopStudy` once that step has finished (for staged runs).
    """

    def __init__(self, out: Path, names: list[str], progress: bool = True, stop_after: str = ""):
        self.out = out
        self.bar = tqdm(total=len(names), desc="study", unit="step", disable=not progress)
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.stop_after = stop_after

    def run(self, name: str, key: str, fn: Callable[[Path], dict]) -> dict:
        """`fn(step_dir) -> summary` unless `DIR/name/step.json` holds the same key."""
        folder = self.out / name
        marker = folder / MARKER
        if marker.is_file():
            try:
                saved = json.loads(marker.read_text())
                if saved.get("key") == key:
                    self.skipped.append(name)
                    self.bar.set_postfix_str(f"{name}: done before")
                    self.bar.update(1)
                    self._maybe_stop(name)
                    return saved["summary"]
            except (json.JSONDecodeError, KeyError):
                pass  # unreadable marker: run the step again
        self.bar.set_postfix_str(name)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        summary = fn(folder)
        summary = {**summary, "seconds": round(time.monotonic() - t0, 1)}
        write_json(marker, {"key": key, "summary": summary})
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


class StopStudy(Exception):
    """Raised after the step named by `--stop-after`; the next run resumes after it."""
