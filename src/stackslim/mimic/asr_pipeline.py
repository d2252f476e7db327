"""`run_asr(model, data, out, cfg)`: mimic layers that feed the teacher's Whisper decoder
(`stackslim mimic MODEL DATA --task asr`), trained and scored by WER (`mimic.asr`).

    from stackslim.mimic import MimicConfig, run
    cfg = MimicConfig(task="asr", kind="transformer", positions=True, task_epochs=3)
    res = run("whisper-tiny.en", "synth-sentences", "runs/mimic-asr", cfg)
    res.mimic["wer"]["wer"], res.teacher["wer"]["interval95"]

Writes ``DIR/config.json``, ``DIR/model/`` (`MimicModel.save`, no classifier head: the
teacher's decoder reads it) and ``DIR/mimic.json`` (`AsrMimicResult`, written last). The model,
tokenizer and data set are checked before anything is written: a model that is not Whisper,
or a data set without ``split=pool`` and ``split=eval`` clips, is refused with one line.

Cost is counted in work: epochs of each stage (`--epochs`, `--task-epochs`); `--max-minutes`
is only a cap, and the log says when it bit. Each phase records its wall and CPU seconds.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import runtime
from ..data import AudioDataset, load_dataset
from ..evaluate.latency import bytes_on_disk
from ..evaluate.wer import load_tokenizer
from ..models import Encoder, load_encoder
from ..results import provenance
from ..run import start_run
from .asr import (
    build_asr_data,
    fit_asr,
    sentence_splits,
    spread,
    wer_table,
    wer_with_interval,
)
from .config import MimicConfig, MimicError
from .data import check_encoder
from .model import MimicModel

COMMAND = "mimic"
WRITES = ("mimic.json", "model")  # the results file first


@dataclass
class AsrMimicResult:
    """Everything a `--task asr` mimic run measured.

    Attributes:
        config, model, data: the run's inputs.
        teacher: encoder parameters (whole, stack) and `wer` (WER, interval95, clips, hypotheses).
        mimic: parameters (whole, stack, front end), bytes of the saved folder, `wer_stage1`
            (after stage 1; None when it did not run) and `wer` (the final model).
        sentences: pool clips trained / validated on, frames, teacher tokens; eval clips.
        logs: the training log of each stage.
        seconds: phase → {"wall", "cpu"} seconds (cpu: this process, every thread).
        model_dir: where the mimic model was saved.
    """

    config: MimicConfig
    model: str
    data: str
    teacher: dict
    mimic: dict
    sentences: dict
    logs: dict
    seconds: dict
    model_dir: str
    provenance: dict = field(default_factory=provenance)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def table(self) -> str:
        m, t = self.mimic, self.teacher
        size = (f"{'parameters (stack)':<22} teacher {t['params_stack']:,}  mimic {m['params_stack']:,} "
                f"({t['params_stack'] / m['params_stack']:.1f}x smaller)")
        return "\n".join([size, wer_table(t["wer"], {"after stage 1": m["wer_stage1"],
                                                     "final": m["wer"]})])


class _Clock:
    """Wall and CPU seconds of each named phase."""

    def __init__(self) -> None:
        self.seconds: dict[str, dict] = {}

    def phase(self, name: str):
        clock = self

        class _Phase:
            def __enter__(self):
                self.w, self.c = time.monotonic(), time.process_time()

            def __exit__(self, *exc):
                clock.seconds[name] = {"wall": time.monotonic() - self.w,
                                       "cpu": time.process_time() - self.c}
        return _Phase()


def check_inputs(model, data, cfg: MimicConfig):
    """Load and check everything before the run writes: (teacher, Whisper model, tokenizer,
    data set, pool indices, eval indices)."""
    if (cfg.train.epochs == 0 or cfg.baseline) and cfg.task_epochs == 0:
        raise MimicError("--task asr: nothing to train (--epochs 0 or --baseline, and --task-epochs 0)")
    enc = model if isinstance(model, Encoder) else load_encoder(model)
    name = getattr(enc, "name", str(model))
    if enc.family != "whisper":
        raise MimicError(f"--task asr needs a Whisper model; {name} is a {enc.family!r} model")
    check_encoder(enc)
    whisper, tok = load_tokenizer(str(model) if isinstance(model, (str, os.PathLike)) else name)
    if whisper is None:
        raise MimicError(f"--task asr: {tok}")
    ds = data if isinstance(data, AudioDataset) else load_dataset(data)
    pool, ev = sentence_splits(ds, getattr(data, "name", str(data)))
    if cfg.max_clips and cfg.max_clips < len(pool):  # a seeded subset, for quick runs
        rng = np.random.default_rng(cfg.train.seed)
        pool = sorted(rng.choice(pool, cfg.max_clips, replace=False).tolist())
    if len(pool) < 2:
        raise MimicError(f"{getattr(data, 'name', data)}: --task asr needs at least 2 pool sentences")
    return enc, enc.model, tok, ds, pool, spread(ev, cfg.eval_clips)


def run_asr(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
            out: str | os.PathLike, cfg: MimicConfig, *, progress: bool = True,
            force: bool = False) -> AsrMimicResult | None:
    """Train mimic layers for `model`'s Whisper decoder on `data`'s pool sentences; WER on its
    eval sentences, beside the teacher's. Returns the result written to ``out/mimic.json``
    (None on torchrun ranks other than 0)."""
    seed = cfg.train.seed
    enc, whisper, tok, ds, pool, ev = check_inputs(model, data, cfg)
    clock = _Clock()
    with start_run(COMMAND, out, cfg, model=model, data=data, writes=WRITES, force=force) as r:
        data_name = getattr(data, "name", str(data))
        enc.eval().to(runtime.choose_device(cfg.device))  # the teacher's passes
        with clock.phase("teacher_states"):
            adata = build_asr_data(enc, whisper, tok, ds, pool, cfg, progress)
        enc.cpu()
        waves = [ds.load(i) for i in ev]
        refs = [ds.clips[i].label for i in ev]
        with clock.phase("teacher_wer"):
            t_wer = wer_with_interval(enc, whisper, tok, waves, refs, seed=seed)
        student = MimicModel.from_teacher(
            enc, None, cfg.kind, cfg.layers, cfg.hidden, cfg.heads, cfg.positions, seed=seed,
            info={"data": data_name, "task": "asr", "decoder": enc.name})
        logs: dict = {"stage1": None, "stage2": None}
        wer1 = None
        if cfg.train.epochs > 0 and not cfg.baseline:
            with clock.phase("stage1"):
                logs["stage1"] = fit_asr(student, adata, cfg, 1, progress)
            with clock.phase("wer_stage1"):
                wer1 = wer_with_interval(student.as_encoder(), whisper, tok, waves, refs, seed=seed)
        final = wer1
        if cfg.task_epochs > 0:
            with clock.phase("stage2"):
                logs["stage2"] = fit_asr(student, adata, cfg, 2, progress)
            with clock.phase("wer_stage2"):
                final = wer_with_interval(student.as_encoder(), whisper, tok, waves, refs, seed=seed)
        student.eval()
        if not r.is_main:
            return None
        model_dir = student.save(r.out / "model")
        result = AsrMimicResult(
            config=cfg, model=enc.name, data=data_name,
            teacher={"params": enc.num_params(), "params_stack": enc.num_params(stack_only=True),
                     "wer": t_wer},
            mimic={"params": student.num_params(), "params_stack": student.num_params("stack"),
                   "params_front_end": student.num_params("front_end"),
                   "bytes": bytes_on_disk(model_dir), "wer_stage1": wer1, "wer": final},
            sentences={**adata.describe(), "eval": len(ev), "window_s": cfg.window or 6.0},
            logs=logs, seconds=clock.seconds, model_dir=str(model_dir))
        r.write_json("mimic.json", result)
    return result
