"""`stackslim.share.run(model, data, out, cfg)`: convert, measure, recover, compare.

Steps: teacher states of the task's splits (and of the --unlabelled clips) → the teacher's head
(fitted on them) → `to_residual` (one rank, or ranks allocated under --size) → accuracy (and,
for Whisper, WER through the original decoder) before recovery → layer-wise reconstruction
(--local-epochs, `local.py`) → recovery by distillation on the train split and the unlabelled
clips (the task loss on the train split only) → the same after each stage, with every layer's
output error on the validation split → sizes (unique parameters, bytes on disk, against the
dense model) and CPU latency (dense, factored, materialised).
Writes ``out/share.json`` (last: its presence marks a finished run), ``out/config.json`` and
``out/model/`` (compact).
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from .. import runtime
from ..data import AudioDataset, unlabelled_clips
from ..data.augment import with_copies
from ..data.pool import unlabelled_specs
from ..evaluate import load_tokenizer, sentence_clips, stack_accuracy, whisper_wer
from ..heads import accuracy, fit_head
from ..models.base import Encoder, EncoderError
from ..models.cache import StateCache
from ..results import provenance
from ..run import start_run
from ..train import TrainConfig
from .asr import AsrRecovery, clip_task, padded_batches, row_prompts, teacher_tokens
from .config import ShareConfig, ShareError
from .convert import layer_matrices, to_residual
from .local import fit_local, layer_errors
from .recover import distill_cache, last_state_error, recover, recovery_set
from .size import disk_report, latency_report

COMMAND = "share"
RESULT = "share.json"


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
    local: dict | None = None  # layer-wise fit: its log and the evaluation right after it
    layer_errors: dict = field(default_factory=dict)  # stage → per-layer output errors
    allocation: dict | None = None  # with --size: the chosen ranks and the budget's account
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=provenance)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def final_evaluation(r: dict) -> dict:
    """The evaluation after the last stage that trained the student of a share result (its
    JSON): the recovery's, else the layer-wise fit's, else the conversion's alone."""
    return r["after"] or (r.get("local") or {}).get("eval") or r["before"]


def _evaluate(enc: Encoder, student: Encoder | None, head, test_cache, y_test, wer_ctx) -> dict:
    """Accuracy (and WER) of `student` (or of the teacher `enc` when None) on cached states."""
    out: dict[str, Any] = {}
    if student is None:
        out["accuracy"] = accuracy(head, test_cache, y_test)
    else:
        out["accuracy"] = stack_accuracy(student, head, test_cache, y_test)
        out["last_state_error"] = last_state_error(student, test_cache)
    if wer_ctx is not None:
        model, tok, waves, refs = wer_ctx
        w = whisper_wer(student if student is not None else enc, model, tok, waves, refs)
        out["wer"], out["wer_interval"], out["wer_examples"] = w["wer"], w["interval"], w["hypotheses"][:3]
    return out


def held_out(ds: AudioDataset, idx: list[int], n_val: int) -> tuple[list[int], list[int]]:
    """(fit, held-out) clips of `idx`: the last `n_val` are held out, or, when the clips have
    several decoder prompts (`asr.clip_task`: languages or tasks), `n_val` clips spread evenly
    over `idx`, so that every prompt is validated."""
    if n_val and len({clip_task(ds.clips[i]) for i in idx}) > 1:
        held = set(np.linspace(0, len(idx) - 1, n_val).round().astype(int).tolist())
        return ([i for j, i in enumerate(idx) if j not in held],
                [i for j, i in enumerate(idx) if j in held])
    return idx[: len(idx) - n_val], idx[len(idx) - n_val:]


def _unlabelled(teacher: Encoder, pool, cfg: ShareConfig, cached: str, progress: bool
                ) -> tuple[StateCache, StateCache | None]:
    """Teacher states of the --unlabelled clips, and of those held out to validate the decoder
    loss. For Whisper every clip is followed by silence (`asr.padded_batches`), as Whisper reads
    speech and as the WER check reads sentences. With --asr-weight a tenth of them (at most 32)
    is held out: the last ones, or, when the clips have several decoder prompts (languages or
    tasks, `asr.clip_task`), clips spread evenly over the set so that every prompt validates;
    without it, none is. With --augment N each fit clip is followed by its N augmented copies
    (`data.augment.with_copies`: rows of the same clip index); held-out clips stay clean."""
    pool_ds, pool_idx = pool
    asr = cfg.asr_weight > 0
    n_val = min(32, max(1, len(pool_idx) // 10)) if asr and len(pool_idx) > 1 else 0
    fit_idx, val_idx = held_out(pool_ds, pool_idx, n_val)
    wrap = padded_batches if teacher.family == "whisper" else (lambda b: b)
    fit_batches = with_copies(pool_ds.batches(fit_idx, 16), cfg.augment, cfg.train.seed)
    cache = distill_cache(teacher, wrap(fit_batches), total=len(fit_idx) * (1 + cfg.augment),
                          states=cached, desc="teacher states (unlabelled)", progress=progress)
    val_cache = distill_cache(teacher, wrap(pool_ds.batches(val_idx, 16)), total=len(val_idx),
                              states="last", desc="teacher states (unlabelled, validation)",
                              progress=progress) if val_idx else None
    return cache, val_cache


def _prompt_counts(ds: AudioDataset, indices) -> dict[str, int]:
    """Clips per decoder prompt, as "LANGUAGE TASK" (``en`` when a row names none)."""
    keys = Counter(clip_task(ds.clips[i]) for i in indices)
    return {f"{lang or 'en'} {task}": n for (lang, task), n in sorted(keys.items(), key=str)}


def run(model: str | os.PathLike | Encoder, data: str | os.PathLike | AudioDataset,
        out: str | os.PathLike, cfg: ShareConfig = ShareConfig(), *, progress: bool = True,
        force: bool = False, spec: str | None = None) -> ShareResult | None:
    """Convert `model` to the ResidualTransformer form, recover it, and compare it with the teacher.

    Args:
        model: a model spec for `load_encoder`, or an Encoder.
        data: a labelled data set (folder, CSV, synth-commands, or an AudioDataset).
        out: output folder (share.json, config.json, model/).
        cfg: the settings (`ShareConfig`; `cfg.train` is the recovery).
        progress: show progress bars.
        force: write into an `out` that holds another command's run.
        spec: when `model` is an Encoder, the spec it was loaded from: Whisper's tokenizer comes
            from there (WER, `asr_weight`); the Encoder's own weights are used either way.

    Returns:
        The ShareResult also written to ``out/share.json``; None on the ranks other than 0
        under torchrun (they encode their shard of the clips and recover with DDP; rank 0
        measures, saves and writes).
    """
    t0 = time.monotonic()
    seed = cfg.train.seed
    groups, max_size = cfg.group_spec()
    runtime.init_from_env()
    # a bad --unlabelled fails here, before anything is written
    pool = unlabelled_clips(cfg.unlabelled, cfg.max_unlabelled, seed) if cfg.unlabelled else None
    inputs = [*(unlabelled_specs(cfg.unlabelled) if cfg.unlabelled else []), cfg.wer_data or None]
    with start_run(COMMAND, out, cfg, model=model, data=data, inputs=inputs,
                   writes=(RESULT, "model"), force=force) as r:
        teacher = r.encoder(model)
        whisper = tok = None  # the original Whisper model (its decoder) and tokenizer
        if teacher.family == "whisper" and ((cfg.wer_data and cfg.wer_clips > 0) or cfg.asr_weight > 0):
            tok_spec = str(model) if isinstance(model, (str, os.PathLike)) else spec
            whisper, tok = load_tokenizer(tok_spec) if tok_spec else (None, "")
            whisper = teacher.model if whisper is not None else None  # the teacher's own weights
        if cfg.asr_weight > 0 and whisper is None:
            raise ShareError(f"--asr-weight needs a Whisper model given by its spec with its "
                             f"tokenizer; {getattr(model, 'name', model)} is a {teacher.family!r} "
                             "model" + (f" ({tok})" if tok else ""))
        prompts: dict[int, list[int]] = {}  # data set index → decoder prompt (asr.row_prompts)
        if cfg.asr_weight > 0 and pool is not None:  # an unknown language fails before encoding
            try:
                prompts = dict(zip(pool[1], row_prompts(whisper, tok, [pool[0].clips[i] for i in pool[1]])))
            except EncoderError as e:
                raise ShareError(f"--unlabelled {e}") from None
        task = r.task(data, cfg.task, seed=seed, max_clips=cfg.max_clips)
        rec = cfg.train
        states = cfg.recover_states if rec.epochs > 0 else "last"
        # the teacher states distilled (the layer-wise fit reads them all)
        cached = "last" if states == "last" and cfg.local_epochs == 0 else "all"
        teacher.to(runtime.choose_device(cfg.device))  # the teacher's passes: the costly part
        train_cache = distill_cache(teacher, task.dataset.batches(task.splits["train"], 16),
                                    total=len(task.splits["train"]), states=cached, progress=progress)
        pool_cache = pool_val = asr = None
        if pool is not None and (rec.epochs > 0 or cfg.local_epochs > 0):  # encoded once
            pool_cache, pool_val = _unlabelled(teacher, pool, cfg, cached, progress)
        # every state of the validation split: validation reads 0 and L, the layer errors all
        val_cache = distill_cache(teacher, task.dataset.batches(task.splits["validation"], 16),
                                  total=len(task.splits["validation"]), states="all",
                                  desc="encoding validation", progress=progress)
        test_cache = task.cache(teacher, "test", progress=progress)
        teacher.cpu()  # the cached states are on the CPU; so are conversion, recovery and latency
        y_train, y_val, y_test = task.y("train"), task.y("validation"), task.y("test")
        head, _ = fit_head(train_cache, y_train, val_cache, y_val, task.num_classes,
                           TrainConfig(epochs=cfg.head_epochs, seed=seed), progress=progress)
        if pool_cache is not None and cfg.asr_weight > 0:  # the teacher decodes them once
            asr = AsrRecovery(teacher_tokens(whisper, tok, pool_cache, progress=progress, top_k=cfg.asr_top_k,
                                             prompts=[prompts[i] for i in pool_cache.indices]),
                              cfg.asr_weight, pool_val,
                              teacher_tokens(whisper, tok, pool_val, progress=progress,
                                             prompts=[prompts[i] for i in pool_val.indices])
                              if pool_val is not None else None, cfg.asr_select, tok)
        notes: list[str] = []
        if pool is not None and pool_cache is None:
            notes.append("--unlabelled unused: no recovery (--epochs 0, --local-epochs 0)")
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
            block_waves = [task.dataset.load(i) for i in task.splits["train"][: cfg.block_clips]]
        calib = None
        if cfg.calib > 0:  # calibration clips: the train split's first, never validation or test
            calib = [task.dataset.load(i) for i in task.splits["train"][: cfg.calib]]
        try:
            student = to_residual(teacher, groups=groups, rank=cfg.rank, diag=cfg.diag,
                                  share_norms=cfg.share_norms, init=cfg.init, max_size=max_size,
                                  waves=block_waves, seed=seed, calib=calib, align=cfg.align,
                                  matrices=layer_matrices(teacher.family, cfg.share_maps),
                                  size=cfg.size or None)
        except EncoderError as e:
            if cfg.size and "size" in str(e):
                raise ShareError(f"--size: {e}") from None
            raise
        before = _evaluate(teacher, student, head, test_cache, y_test, wer_ctx)
        errors = {"converted": layer_errors(student, val_cache)}
        after = log = rec_data = local = None
        if rec.epochs > 0 or cfg.local_epochs > 0:
            # Whisper's sentences stay whole: the teacher's states were computed over the whole
            # window, and a student given a cut window could not see what they attended to
            rec_cache, rec_labels, rec_data = recovery_set(train_cache, y_train, pool_cache,
                                                           whole=teacher.family == "whisper")
        if cfg.local_epochs > 0:
            fit = replace(rec, epochs=cfg.local_epochs, lr=cfg.local_lr, max_minutes=0.0)
            local_log = fit_local(student, rec_cache, fit, cfg.local_mode, progress=progress)
            local = {**local_log.to_json(), "clips": len(rec_cache),
                     "eval": _evaluate(teacher, student, head, test_cache, y_test, wer_ctx)}
            errors["local"] = layer_errors(student, val_cache)
        if rec.epochs > 0:
            if asr is not None:  # its targets' rows follow the train split's in rec_cache
                asr = replace(asr, train=asr.train.shifted(len(train_cache)))
                rec_data["asr"] = {"weight": cfg.asr_weight, "top_k": cfg.asr_top_k,
                                   "select": cfg.asr_select, "clips": len(asr.train.tokens),
                                   "tokens": sum(len(t) + 1 for t in asr.train.tokens.values()),
                                   "validation_clips": len(asr.val.tokens) if asr.val else 0,
                                   "prompts": _prompt_counts(pool[0], pool_cache.indices)}
            log = recover(student, rec_cache, rec, states=states, head=head, labels=rec_labels,
                          val_cache=val_cache, val_labels=y_val, task_weight=cfg.task_weight,
                          progress=progress, asr=asr)
            after = _evaluate(teacher, student, head, test_cache, y_test, wer_ctx)
            errors["recovered"] = layer_errors(student, val_cache)
        if not r.is_main:  # latency is timed, and files written, by rank 0 alone
            return None
        student.save(r.out / "model")
        dense = student.materialize()
        latency = {}
        if cfg.latency_clips > 0:
            waves = [task.dataset.load(i) for i in task.splits["test"][: cfg.latency_clips]]
            latency = latency_report({"dense": teacher, "factored": student, "materialized": dense}, waves)
        result = ShareResult(
            model=str(getattr(model, "name", model)), data=str(data),
            config=asdict(cfg), task=task.describe(), groups=student.groups,
            size=student.size_report(), disk=disk_report(student, dense), latency=latency,
            conversion={"summary": student.conversion_summary(), "matrices": student.conversion,
                        "alignment": student.alignment},
            teacher=teacher_eval, before=before, after=after,
            recovery={**log.to_json(), "data": rec_data} if log is not None else None,
            seconds=time.monotonic() - t0, notes=notes, local=local, layer_errors=errors,
            allocation=student.allocation)
        r.write_json(RESULT, result)
        return result
