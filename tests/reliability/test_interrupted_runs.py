"""Killed runs (SIGINT, SIGKILL) of analyze, mimic, share and prune: rerunning gives the same
results as an uninterrupted run, and a killed run never leaves a file that looks finished.

Each kill happens in a forked child at a chosen point (the n-th call of a function: a training
step, the save of a model folder, a results file); one test sends SIGINT from outside to a real
`python -m stackslim` process.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import copy_run
from relhelpers import FAST, RESULT_FILE, Trigger, assert_same, load_result, run_forked

from stackslim.cli import main

INT, KILL = signal.SIGINT, signal.SIGKILL


def _argv(cmd: str, data: Path, out: Path) -> list[str]:
    return [cmd, "random:wav2vec2", str(data), "--out", str(out), *FAST[cmd]]


def _check_killed(child, signum: int) -> None:
    if signum == INT:  # Ctrl-C: one line, status 130, no traceback
        assert child.exit_code == 130, child.stderr
        lines = [ln for ln in child.stderr.splitlines() if "interrupted" in ln]
        assert len(lines) == 1 and "Traceback" not in child.stderr
    else:
        assert child.signal == KILL, (child.exit_code, child.stderr[-2000:])


CASES = [  # command, where the child is interrupted, signal
    ("analyze", Trigger("stackslim.similarity.engine.SimilarityEngine", "update", 4, INT), "after 2 batches were checkpointed"),
    ("analyze", Trigger("stackslim.similarity.engine.SimilarityEngine", "update", 5, KILL), "after 4 batches were checkpointed"),
    ("mimic", Trigger("torch.optim.AdamW", "step", 3, KILL), "in training"),
    ("mimic", Trigger("safetensors.torch", "save_file", 1, INT, after=True), "while saving model/"),
    ("share", Trigger("torch.optim.AdamW", "step", 2, INT), "in recovery"),
    ("share", Trigger("stackslim.share.io", "save_file", 1, KILL, after=True), "while saving model/"),
]


@pytest.mark.parametrize("cmd, trigger, where", CASES, ids=[f"{c}-{signal.Signals(t.signum).name}-{w}" for c, t, w in CASES])
def test_killed_run_then_rerun_gives_the_same_results(cmd, trigger, where, tiny_data, reference, tmp_path):
    out = tmp_path / "out"
    child = run_forked(_argv(cmd, tiny_data, out), tmp_path / "child", trigger)
    _check_killed(child, trigger.signum)
    assert not (out / RESULT_FILE[cmd]).exists(), f"a run killed {where} left {RESULT_FILE[cmd]}"
    if cmd == "analyze":
        assert (out / ".analyze.ckpt").exists()  # what the rerun resumes from
    else:
        assert not (out / "model").exists() or (out / "model").is_dir()
    assert main(_argv(cmd, tiny_data, out)) == 0
    assert_same(load_result(out, cmd), load_result(reference(cmd), cmd))
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"temporaries left after the rerun: {leftovers}"


STALE = [  # a rerun over a finished run's folder, killed before it finishes
    ("analyze", Trigger("stackslim.run", "write_json", 2, KILL)),  # after config.json
    ("mimic", Trigger("torch.optim.AdamW", "step", 2, KILL)),
    ("share", Trigger("torch.optim.AdamW", "step", 1, KILL)),
    ("prune", Trigger("stackslim.prune.pipeline", "save_pruned", 1, KILL)),
]


@pytest.mark.parametrize("cmd, trigger", STALE, ids=[c for c, _ in STALE])
def test_killed_rerun_does_not_leave_old_results_looking_finished(cmd, trigger, tiny_data, reference, tmp_path):
    out = copy_run(reference(cmd), tmp_path / "out")
    child = run_forked(_argv(cmd, tiny_data, out), tmp_path / "child", trigger)
    _check_killed(child, KILL)
    # the folder now holds parts of the new run: the old results must not vouch for them
    assert not (out / RESULT_FILE[cmd]).exists()


def test_sigint_to_a_real_process_exits_130_without_traceback(tone_data, tmp_path):
    """`python -m stackslim analyze` interrupted from outside once its first checkpoint exists."""
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the tone set listed 20 times: 1,440 one-clip batches, a checkpoint after each, so the run
    # lasts long enough to be interrupted however fast the machine is (no skip)
    rows = (tone_data / "manifest.csv").read_text().splitlines()
    body = [f"{tone_data / r.split(',', 1)[0]},{r.split(',', 1)[1]}" for r in rows[1:]]
    manifest = tmp_path / "data" / "many.csv"
    manifest.parent.mkdir()
    manifest.write_text("\n".join([rows[0]] + body * 20) + "\n")
    argv = [sys.executable, "-m", "stackslim", "analyze", "random:wav2vec2", str(manifest), "--out", str(out),
            "--encode-batch", "1", "--checkpoint-every", "1", "--metrics", "cosine,cka"]
    # a child of a background job inherits SIGINT ignored (and Python then keeps it ignored):
    # give it the default disposition, as a terminal would
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (out / ".analyze.ckpt").exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no checkpoint before the end: {proc.communicate()[1][-2000:]}")
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted" in err
    assert not (out / "similarity.json").exists()


STUDY_FAST = ["--quick", "--max-clips", "12", "--analyze-clips", "12", "--mimic-epochs", "1", "--recover-epochs", "1",
              "--latency-clips", "1", "--strategies", "forward,bi"]


def test_killed_study_resumes_after_its_finished_steps(tiny_data, tmp_path):
    """SIGKILL as the third step (the first mimic variant) starts: analyze and prune are kept
    (their step markers), nothing looks finished, and the rerun only runs what was left."""
    out = tmp_path / "study"
    argv = ["study", "random:wav2vec2", str(tiny_data), "--out", str(out), *STUDY_FAST]
    child = run_forked(argv, tmp_path / "child", Trigger("stackslim.study.steps.StepRunner", "run", 3, KILL))
    _check_killed(child, KILL)
    assert (out / "analyze" / "step.json").is_file() and (out / "prune" / "step.json").is_file()
    assert not (out / "results.json").exists() and not (out / "report.html").exists()
    kept = (out / "prune" / "step.json").stat().st_mtime_ns
    assert main(argv) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["steps_skipped"] == ["analyze", "prune"] and "analyze" not in r["steps_run"]
    assert (out / "prune" / "step.json").stat().st_mtime_ns == kept
    assert (out / "report.html").is_file()
