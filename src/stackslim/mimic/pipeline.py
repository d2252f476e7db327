"""`run(model, data, out, cfg)`: train mimicking layers and compare them with the teacher.

    from stackslim.mimic import MimicConfig, run
    res = run("whisper-base", "synth-commands", "runs/mimic", MimicConfig(kind="linear", hidden=512))
    print(res.table())

Writes ``DIR/config.json`` (the run's inputs), ``DIR/model/`` (`MimicModel.save`) and
``DIR/mimic.json`` (`MimicResult`, written last: it marks a finished run).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import runtime
from ..data import AudioDataset, unlabelled_clips
from ..heads import Task, accuracy
from ..models import Encoder
from ..results import provenance
from ..run import start_run
from .asr import ASR
from .asr_pipeline import AsrMimicResult, run_asr
from .config import MimicConfig, MimicError
from .data import LAST, build_data, check_encoder, find_boundary
from .evaluate import comparison_table, mimic_numbers, ratios, teacher_numbers
from .fit import accuracy_on, fit_mimic, fit_teacher_head
from .model import MimicModel

COMMAND = "mimic"
WRITES = ("mimic.json", "model")  # the results file first


@dataclass
class MimicResult:
    """Everything a mimic run measured.

    Attributes:
        config: the run's MimicConfig.
        model, data: what the teacher and the data were.
        teacher, mimic: `evaluate.teacher_numbers` / `mimic_numbers` (params, bytes, latency
            in ms per clip, accuracy on the test split).
        capacity: mimic accuracy / teacher accuracy (test split).
        ratios: teacher / mimic for parameters, bytes and latencies.
        task: classes, clips per split, chance. cache: clips and frames cached.
        boundary: how the first of 2 layers' target was chosen (None with 1 layer).
        logs: training logs of the teacher head and of the two stages.
        model_dir: where the mimic model was saved.
    """

    config: MimicConfig
    model: str
    data: str
    teacher: dict
    mimic: dict
    capacity: float
    ratios: dict
    task: dict
    cache: dict
    boundary: dict | None
    logs: dict
    model_dir: str
    provenance: dict = field(default_factory=provenance)

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def table(self) -> str:
        return comparison_table(self.teacher, self.mimic, self.capacity)


def choose_boundary(enc: Encoder, task: Task, cfg: MimicConfig,
                    progress: bool = True) -> tuple[int | None, dict | None]:
    """The hidden state the first of 2 mimic layers targets (None for 1 layer)."""
    if cfg.layers == 1:
        return None, None
    L = enc.num_layers
    if L < 2:
        raise MimicError(f"{enc.name} has {L} layer: 2 mimic layers need at least 2")
    if cfg.boundary:
        if not 1 <= cfg.boundary <= L - 1:
            raise MimicError(f"--boundary must lie in 1..{L - 1} for {enc.name}, got {cfg.boundary}")
        return cfg.boundary, {"boundary": cfg.boundary, "how": "given (--boundary)"}
    train = task.splits["train"]
    rng = np.random.default_rng(cfg.train.seed)
    pick = sorted(rng.choice(train, min(cfg.block_clips, len(train)), replace=False).tolist())
    return find_boundary(enc, task.dataset.batches(pick, cfg.encode_batch), progress=progress)


def run(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
        out: str | os.PathLike, cfg: MimicConfig = MimicConfig(), *, progress: bool = True,
        force: bool = False) -> "MimicResult | AsrMimicResult | None":
    """Train a mimic model for `model` on `data`'s task and compare it with the teacher.
    With ``cfg.task == "asr"``: `asr_pipeline.run_asr` (Whisper; WER instead of accuracy).

    Args:
        model: an encoder spec for `load_encoder` (or an `Encoder`).
        data: a data set spec for `load_dataset` (or an `AudioDataset`).
        out: output folder (created).
        cfg: the run's options (checked when built).
        progress: show progress bars.
        force: take over a folder that holds another command's run.

    Returns:
        The MimicResult also written to ``out/mimic.json``; None on the ranks other than 0
        under torchrun (they encode their shard of the clips and train with DDP; rank 0
        measures, saves and writes).
    """
    if cfg.task == ASR:
        return run_asr(model, data, out, cfg, progress=progress, force=force)
    seed = cfg.train.seed
    # a bad unlabelled set fails here, before anything is written
    pool = unlabelled_clips(cfg.unlabelled, cfg.max_unlabelled, seed)[0] if cfg.unlabelled else None
    inputs = [cfg.unlabelled] if cfg.unlabelled else []
    with start_run(COMMAND, out, cfg, model=model, data=data, inputs=inputs, writes=WRITES,
                   force=force) as r:
        name = model.name if isinstance(model, Encoder) else str(model)
        data_name = getattr(data, "name", str(data))
        enc = r.encoder(model)
        check_encoder(enc)
        task = r.task(data, cfg.task, seed=seed, max_clips=cfg.max_clips)
        enc.to(runtime.choose_device(cfg.device))  # the teacher's passes: the costly part
        boundary, binfo = choose_boundary(enc, task, cfg, progress)
        mdata = build_data(enc, task, boundary, pool, cfg.max_unlabelled, cfg.encode_batch, seed, progress)
        enc.cpu()  # the cached states are on the CPU; so are training and the latency measured
        head, head_log = fit_teacher_head(mdata, task.num_classes, cfg, progress)
        teacher_acc = accuracy(head, mdata.test, mdata.y["test"], which=LAST)
        student = MimicModel.from_teacher(
            enc, head, cfg.kind, cfg.layers, cfg.hidden, cfg.heads, cfg.positions,
            class_names=task.names, seed=seed,
            info={"data": data_name, "task": cfg.task, "boundary": boundary, "baseline": cfg.baseline})
        logs = fit_mimic(student, mdata, cfg, progress)
        mimic_acc = accuracy_on(student, mdata.test, mdata.y["test"])
        if not r.is_main:  # latency is timed, and files written, by rank 0 alone
            return None
        model_dir = student.save(r.out / "model")
        waves = [task.dataset.load(i) for i in task.splits["test"][: cfg.latency_batch]]
        t = teacher_numbers(enc, head, waves, teacher_acc, repeats=cfg.latency_repeats)
        m = mimic_numbers(student, waves, model_dir, mimic_acc, repeats=cfg.latency_repeats)
        result = MimicResult(
            config=cfg, model=name, data=data_name, teacher=t, mimic=m,
            capacity=mimic_acc / teacher_acc if teacher_acc > 0 else 0.0, ratios=ratios(t, m),
            task=task.describe(), cache=mdata.describe(), boundary=binfo,
            logs={"teacher_head": head_log, **logs}, model_dir=str(model_dir))
        r.write_json("mimic.json", result)
    return result
