"""`stackslim share MODEL DATA --out DIR`: convert, measure, recover, compare.

    stackslim share whisper-base synth-commands --out runs/share --group 3 --rank 16
    stackslim share whisper-base synth-commands --out runs/pool --unlabelled synth-sentences \\
        --max-unlabelled 500

maps 1:1 to `share(model, data, out, cfg)`. Steps: teacher states of the task's splits (and of
the --unlabelled clips) → the teacher's head (fitted on them) → `to_residual` → accuracy (and,
for Whisper, WER through the original decoder) before recovery → recovery by distillation on
the train split and the unlabelled clips (the task loss on the train split only) → the same
after → sizes (unique parameters, bytes on disk, against the dense model) and CPU latency
(dense, factored, materialised). Writes ``DIR/share.json``, ``DIR/config.json`` and
``DIR/model/`` (compact).
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from .. import runtime
from ..config import add_config_args, config_from_args
from ..data import unlabelled_clips
from ..heads import accuracy, fit_head, prepare_task
from ..models.base import Encoder, EncoderError
from ..models.cache import StateCache
from ..results import prepare_out_dir, provenance, write_json
from ..train import TrainConfig
from .config import ShareConfig
from .convert import to_residual
from .evaluate import load_tokenizer, sentence_clips, whisper_wer
from .asr import AsrRecovery, padded_batches, teacher_tokens
from .recover import distill_cache, last_state_error, recover, recovery_set, student_accuracy
from .size import disk_report, latency_report

COMMAND = "share"


@dataclass
class ShareResult:
    """What `share` measured. Accuracies are fractions on the task's test split, WER a fraction."""

    model: str
    data: str
    config: dict
    task: dict
    groups: list[list[int]]
    size: dict
    disk: dict
    latency: dict
    conversion: dict  # summary per matrix, every (layer, matrix) error, alignment spreads
    teacher: dict
    before: dict
    after: dict | None
    recovery: dict | None  # the training log, and under "data" the clips and frames it used
    seconds: float
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=provenance)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _evaluate(enc: Encoder, student: Encoder | None, head, test_cache, y_test, wer_ctx) -> dict:
    """Accuracy (and WER) of `student` (or of the teacher `enc` when None) on cached states."""
    out: dict[str, Any] = {}
    if student is None:
        out["accuracy"] = accuracy(head, test_cache, y_test)
    else:
        out["accuracy"] = student_accuracy(student, head, test_cache, y_test)
        out["last_state_error"] = last_state_error(student, test_cache)
    if wer_ctx is not None:
        model, tok, waves, refs = wer_ctx
        w = whisper_wer(student if student is not None else enc, model, tok, waves, refs)
        out["wer"], out["wer_examples"] = w["wer"], w["hypotheses"][:3]
    return out


def _unlabelled(teacher: Encoder, pool, cfg: ShareConfig, cached: str, progress: bool
                ) -> tuple[StateCache, StateCache | None]:
    """Teacher states of the --unlabelled clips, and of those held out to validate the decoder
    loss. With --asr-weight the clips are encoded whole and followed by silence
    (`asr.padded_batches`), as the WER check reads sentences, and a tenth of them (at most 32)
    is held out; without it, none is."""
    pool_ds, pool_idx = pool
    asr = cfg.asr_weight > 0
    n_val = min(32, max(1, len(pool_idx) // 10)) if asr and len(pool_idx) > 1 else 0
    fit_idx, val_idx = pool_idx[: len(pool_idx) - n_val], pool_idx[len(pool_idx) - n_val:]
    wrap = padded_batches if asr else (lambda b: b)
    cache = distill_cache(teacher, wrap(pool_ds.batches(fit_idx, 16)), total=len(fit_idx),
                          states=cached, desc="teacher states (unlabelled)", progress=progress)
    val_cache = distill_cache(teacher, wrap(pool_ds.batches(val_idx, 16)), total=len(val_idx),
                              states="last", desc="teacher states (unlabelled, validation)",
                              progress=progress) if val_idx else None
    return cache, val_cache


def share(model: str | Encoder, data: str, out: str | Path, cfg: ShareConfig = ShareConfig(),
          progress: bool = True, spec: str | None = None) -> ShareResult | None:
    """Convert `model` to the ResidualTransformer form, recover it, and compare it with the teacher.

    Args:
        model: a model spec for `load_encoder`, or an Encoder.
        data: a labelled data set (folder, CSV, or synth-commands).
        out: output folder (share.json, config.json, model/).
        cfg: the settings (`ShareConfig`).
        spec: when `model` is an Encoder, the spec it was loaded from: Whisper's tokenizer comes
            from there (WER, `asr_weight`); the Encoder's own weights are used either way.

    Returns:
        The ShareResult also written to ``out/share.json``; None on the ranks other than 0
        under torchrun (they encode their shard of the clips and recover with DDP; rank 0
        measures, saves and writes).
    """
    from ..models import load_encoder

    t0 = time.monotonic()
    runtime.init_from_env()
    # bad options fail here, before anything is written
    groups, max_size = cfg.group_spec()
    pool = unlabelled_clips(cfg.unlabelled, cfg.max_unlabelled, cfg.seed) if cfg.unlabelled else None
    out = prepare_out_dir(out) if runtime.is_main() else Path(out)
    if runtime.is_main():
        # share.json marks a finished run: a stale one must not vouch for this run's model/
        (out / "share.json").unlink(missing_ok=True)
        write_json(out / "config.json", {"model": str(getattr(model, "name", model)),
                                         "data": str(data), "share": asdict(cfg)})
    teacher = load_encoder(model) if isinstance(model, (str, Path)) else model
    teacher.eval()
    whisper = tok = None  # the original Whisper model (its decoder) and tokenizer
    if teacher.family == "whisper" and ((cfg.wer_data and cfg.wer_clips > 0) or cfg.asr_weight > 0):
        tok_spec = str(model) if isinstance(model, (str, Path)) else spec
        whisper, tok = load_tokenizer(tok_spec) if tok_spec else (None, "")
        whisper = teacher.model if whisper is not None else None  # the teacher's own weights
    if cfg.asr_weight > 0 and whisper is None:
        raise EncoderError(f"--asr-weight needs a Whisper model given by its spec with its "
                           f"tokenizer; {getattr(model, 'name', model)} is a {teacher.family!r} "
                           "model" + (f" ({tok})" if tok else ""))
    task = prepare_task(data, cfg.task, seed=cfg.seed, max_clips=cfg.max_clips or None)
    states = cfg.recover_states if cfg.recover_epochs > 0 else "last"
    cached = "last" if states == "last" else "all"  # the teacher states distilled
    teacher.to(runtime.choose_device(cfg.device))  # the teacher's passes: the costly part
    train_cache = distill_cache(teacher, task.dataset.batches(task.splits["train"], 16),
                                total=len(task.splits["train"]),
                                states=cached, progress=progress)
    pool_cache = pool_val = asr = None
    if pool is not None and cfg.recover_epochs > 0:  # encoded once, like the train split
        pool_cache, pool_val = _unlabelled(teacher, pool, cfg, cached, progress)
    val_cache = task.cache(teacher, "validation", progress=progress)
    test_cache = task.cache(teacher, "test", progress=progress)
    teacher.cpu()  # the cached states are on the CPU; so are conversion, recovery and latency
    y_train, y_val, y_test = task.y("train"), task.y("validation"), task.y("test")
    head, _ = fit_head(train_cache, y_train, val_cache, y_val, task.num_classes,
                       TrainConfig(epochs=cfg.head_epochs, seed=cfg.seed), progress=progress)
    if pool_cache is not None and cfg.asr_weight > 0:  # the teacher transcribes them once
        asr = AsrRecovery(teacher_tokens(whisper, tok, pool_cache, progress=progress, top_k=cfg.asr_top_k),
                          cfg.asr_weight, pool_val,
                          teacher_tokens(whisper, tok, pool_val, progress=progress)
                          if pool_val is not None else None, cfg.asr_select, tok)
    notes: list[str] = []
    if pool is not None and pool_cache is None:
        notes.append("--unlabelled unused: no recovery (--recover-epochs 0)")
    wer_ctx = None
    if teacher.family == "whisper" and cfg.wer_data and cfg.wer_clips > 0:
        if whisper is None:
            notes.append(f"WER skipped: {tok or 'give the model as a spec to find its tokenizer'}")
        else:
            waves, refs = sentence_clips(cfg.wer_data, cfg.wer_clips)
            wer_ctx = (whisper, tok, waves, refs)  # the original decoder, whatever the encoder
    teacher_eval = _evaluate(teacher, None, head, test_cache, y_test, wer_ctx)
    block_waves = None
    if groups == "blocks":
        rows = task.splits["train"][: cfg.block_clips]
        block_waves = [task.dataset.load(i) for i in rows]
    calib = None
    if cfg.calib > 0:  # calibration clips: the train split's first, never validation or test
        calib = [task.dataset.load(i) for i in task.splits["train"][: cfg.calib]]
    student = to_residual(teacher, groups=groups, rank=cfg.rank, diag=cfg.diag,
                          share_norms=cfg.share_norms, init=cfg.init, max_size=max_size,
                          waves=block_waves, seed=cfg.seed, calib=calib, align=cfg.align)
    before = _evaluate(teacher, student, head, test_cache, y_test, wer_ctx)
    after = log = rec_data = None
    if cfg.recover_epochs > 0:
        tcfg = TrainConfig(epochs=cfg.recover_epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                           weight_decay=0.0, patience=cfg.recover_epochs,
                           max_minutes=cfg.recover_minutes, seed=cfg.seed,
                           schedule=cfg.recover_schedule)
        rec_cache, rec_labels, rec_data = recovery_set(train_cache, y_train, pool_cache,
                                                       whole=asr is not None)
        if asr is not None:  # its targets' rows follow the train split's in rec_cache
            asr = replace(asr, train=asr.train.shifted(len(train_cache)))
            rec_data["asr"] = {"weight": cfg.asr_weight, "top_k": cfg.asr_top_k,
                               "select": cfg.asr_select, "clips": len(asr.train.tokens),
                               "tokens": sum(len(t) + 1 for t in asr.train.tokens.values()),
                               "validation_clips": len(asr.val.tokens) if asr.val else 0}
        log = recover(student, rec_cache, tcfg, states=states, head=head, labels=rec_labels,
                      val_cache=val_cache, val_labels=y_val, task_weight=cfg.task_weight,
                      progress=progress, asr=asr)
        after = _evaluate(teacher, student, head, test_cache, y_test, wer_ctx)
    if not runtime.is_main():  # latency is timed, and files written, by rank 0 alone
        return None
    student.save(out / "model")
    dense = student.materialize()
    latency = {}
    if cfg.latency_clips > 0:
        rows = task.splits["test"][: cfg.latency_clips]
        waves = [task.dataset.load(i) for i in rows]
        latency = latency_report({"dense": teacher, "factored": student, "materialized": dense}, waves)
    result = ShareResult(
        model=str(getattr(model, "name", model)), data=str(data), config=asdict(cfg),
        task=task.describe(), groups=student.groups, size=student.size_report(),
        disk=disk_report(student, dense), latency=latency,
        conversion={"summary": student.conversion_summary(), "matrices": student.conversion,
                    "alignment": student.alignment},
        teacher=teacher_eval, before=before, after=after,
        recovery={**log.to_json(), "data": rec_data} if log is not None else None,
        seconds=time.monotonic() - t0, notes=notes)
    write_json(out / "share.json", result)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Convert an encoder to shared weights + low-rank residuals, recover and compare."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Convert MODEL's stack to the ResidualTransformer form (per group of layers one\n"
        "shared weight, plus a low-rank residual and a diagonal per layer), recover it by\n"
        "distillation toward the dense teacher on DATA's train split and the --unlabelled\n"
        "clips (the task loss on the train split only) within --recover-minutes, and\n"
        "compare it with the teacher: size, CPU latency, accuracy (and WER for Whisper).")
    parser.epilog = (
        "example:\n"
        "  stackslim share whisper-base synth-commands --out runs/share --group 3 --rank 16 \\\n"
        "      --unlabelled synth-sentences --max-unlabelled 500 --recover-minutes 8")
    parser.add_argument("model", help="random:<family>, whisper-base, a folder or hub id")
    parser.add_argument("data", help="labelled data: a folder, a CSV manifest or synth-commands")
    parser.add_argument("--out", required=True, help="output folder")
    add_config_args(parser, ShareConfig)


def run(ns: argparse.Namespace) -> int:
    cfg = config_from_args(ShareConfig, ns)
    torch.manual_seed(cfg.seed)
    r = share(ns.model, ns.data, ns.out, cfg)
    if r is None:  # a torchrun rank other than 0
        return 0
    size = r.size
    line = (f"{r.model}: groups {r.groups}, rank {cfg.rank}: stack {size['stack_params']:,} / "
            f"{size['dense_stack_params']:,} parameters ({100 * size['stack_ratio']:.1f}%), "
            f"accuracy {r.teacher['accuracy']:.3f} → {r.before['accuracy']:.3f}")
    if r.after is not None:
        line += f" → {r.after['accuracy']:.3f} after recovery"
        n = r.recovery["data"]
        if n["unlabelled_clips"]:
            how = ("whole, with the decoder loss" if "asr" in n
                   else f"in {n['unlabelled_windows']} windows")
            line += (f" (on {n['labelled_clips']} labelled clips + {n['unlabelled_clips']} "
                     f"unlabelled, {how})")
    if "wer" in r.teacher:
        line += (f"; WER {r.teacher['wer']:.3f} → {r.before['wer']:.3f}"
                 + (f" → {r.after['wer']:.3f}" if r.after else ""))
    print(line)
    print(f"wrote {Path(ns.out) / 'share.json'} and {Path(ns.out) / 'model'}")
    return 0
