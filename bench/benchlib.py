"""Helpers shared by the benches: torch threads set once (`set_threads`), one process per
measurement (bench/scale.py, bench/latency.py) and its peak memory, the machine, and the
result files (DESIGN.md: bench/results/NAME.json + NAME.md).

Peak memory is the kernel's high-water mark of the resident set (VmHWM in /proc/self/status)
of a fresh child process that does one measurement: torch allocates outside Python's heap, so
tracemalloc would miss it, and a process that measured something before would carry its peak.
"""
from __future__ import annotations

import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
_MAPPING = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def proc_status_mib(field: str) -> float:
    """A memory line of /proc/self/status in MiB (VmHWM: peak resident set; VmRSS: now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0  # the kernel reports kB
    raise RuntimeError(f"/proc/self/status has no {field} line (Linux only)")


def resident_mib_under(folder: str | os.PathLike) -> float:
    """MiB of this process's resident pages mapped from files under `folder` (/proc/self/smaps):
    e.g. the memory-mapped weights of a model folder that a forward has read, as opposed to
    the libraries' code pages, which RssFile counts too."""
    root, total, inside = str(Path(folder).resolve()) + os.sep, 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if _MAPPING.match(line):  # "start-end perms offset dev inode [path]"
            head = line.split(maxsplit=5)
            inside = len(head) == 6 and head[5].startswith(root)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])  # kB
    return total / 1024.0


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def machine() -> dict[str, Any]:
    """CPU model, cores, load, versions (`stackslim.results.provenance`)."""
    from stackslim.results import provenance

    cpu = platform.processor()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {**provenance(), "cpu": cpu, "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "note": "a 2-core machine shared with other jobs: compare numbers within one run"}


def run_child(script: Path, args: list[str], threads: int, timeout: float = 900) -> dict:
    """Run `python SCRIPT --child ARGS --json TMP` in a fresh process; its JSON answer."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "child.json"
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        r = subprocess.run([sys.executable, str(script), "--child", *args, "--json", str(out)],
                           env=env, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{script.name} child {args} failed:\n{r.stderr[-3000:]}")
        return json.loads(out.read_text())


def write_results(name: str, doc: dict, markdown: str) -> tuple[Path, Path]:
    """bench/results/NAME.json and NAME.md, each written atomically."""
    from stackslim.results import write_atomic, write_json

    return (write_json(RESULTS / f"{name}.json", doc),
            write_atomic(RESULTS / f"{name}.md", markdown))


def rewrite_table(name: str, markdown) -> None:
    """Rewrite bench/results/NAME.md from NAME.json with `markdown(doc)` (no measurement)."""
    doc = json.loads((RESULTS / f"{name}.json").read_text())
    write_results(name, doc, markdown(doc))


def set_threads(n: int) -> int:
    """Torch's CPU threads, set once at the start of a bench (or of one of its child processes)
    from its `--threads`; the library itself never changes them. Returns `n`."""
    import torch

    if n < 1:
        raise SystemExit(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    return n
