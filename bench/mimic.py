"""Mimicking layers on a real model: the paper's grid against the teacher and the best pruned model.

Commands (the runs merged in bench/results/mimic.md)::

    .venv/bin/python bench/mimic.py --long transformer,1,512,8,3
    .venv/bin/python bench/mimic.py --grid none --no-pruned --merge --threads 2 --bf16 \
        --latency-repeats 3 --stage1-epochs 8 --stage2-epochs 8 --long linear,1,512,20,20

(defaults: --model whisper-base --data synth-commands --task word --grid quick; --merge keeps the
rows of the existing mimic.json that a run does not redo). About 20 min for the quick grid on 2
quiet shared cores once the teacher states are cached; each --long variant adds its budget.
Training recipe flags (--distill, --temperature, --mask-time, --mask-channels, --bf16) apply to
every variant of a run and are recorded in each row.

What it does, on this machine's CPU (torch threads: --threads, default 1: the machine's two
cores are shared, and one thread gives steadier timings):

1. Teacher = the frozen encoder + the paper's head fitted on its cached last states.
   Splits: speaker-disjoint train / validation / test (seed 0); validation is subsampled to
   --val-clips (it only drives early stopping); test is complete.
2. One teacher pass per clip caches the front-end features (before positions), the state at
   the first block's end (for 2 layers) and the last state (`stackslim.mimic.build_data`, with
   the seeded --unlabelled-clips subset of the pool). The cache is saved to --cache and reused
   by later runs.
3. Best pruned model (`stackslim.prune.run_pruning` with the teacher's head, no retraining):
   the paper's forward (delete layers 2, 3, ...) and backward (from the end) orders by default
   (--prune-strategies), the most layers deleted with validation capacity >= 95%.
4. Mimic grid: --grid quick: linear × 1 × z ∈ {32, 512, 2048}, linear × 2 × 512, transformer
   × 1 × 512, the non-mimicker baseline of linear × 1 × 512; full: kind × layers × z (12) + two
   baselines. Stage 1 (MSE on train + the pool), stage 2 (task loss), each bounded by epochs and
   minutes (--stage1-minutes, --stage2-minutes).
5. Each row: parameters (whole, stack), bytes on disk, CPU ms per clip (batch 1 and batch 8,
   audio → logits, median of 7 after 2 warm-ups; speed-ups against the teacher timed just
   before each model), accuracy and capacity on test. Mimic models are saved next to the cache.

Writes bench/results/mimic.json (after every row) and bench/results/mimic.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stackslim.data import default_cache_dir
from stackslim.evaluate.latency import clip_latency
from stackslim.heads import accuracy, prepare_task
from stackslim.mimic import LAST, MimicConfig, MimicData, MimicModel, build_data, find_boundary
from stackslim.mimic.evaluate import mimic_numbers, teacher_logits, teacher_numbers
from stackslim.mimic.fit import accuracy_on, fit_teacher_head, stage1, stage2
from stackslim.models import load_encoder
from stackslim.models.cache import StateCache
from stackslim.prune import PruneConfig, run_pruning
from stackslim.results import provenance, write_atomic, write_json

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # noqa: E402  (bench/benchlib.py)
from mimic_table import markdown, row_from  # noqa: E402  (bench/mimic_table.py)

ROOT = Path(__file__).resolve().parent
POOL_SEED = 3  # the seeded subset of --unlabelled clips
Z_MID = 512  # whisper-base: d = 512 (the paper's 384 or 512 = d)
QUICK = [("linear", 1, 512, False), ("linear", 1, 32, False), ("linear", 1, 2048, False),
         ("linear", 2, 512, False), ("transformer", 1, 512, False), ("linear", 1, 512, True)]
FULL = [(k, n, z, False) for k in ("linear", "transformer") for n in (1, 2) for z in (32, 512, 2048)] + [
    ("linear", 1, 512, True), ("transformer", 1, 512, True)]


def use_torch_mel(adapter) -> None:
    """Whisper only: compute log-mel with the feature extractor's torch STFT instead of its numpy
    one (same values to ~1e-6, about 80x faster on 1 s clips). The encoder adapter calls the numpy
    one; at 30 ms per clip it would dominate a mimic model's latency. Applied to teacher, pruned
    and mimic models alike, so the comparison stays fair."""
    fe = getattr(adapter, "feature_extractor", None)
    if fe is not None and hasattr(fe, "_torch_extract_fbank_features"):
        fe._np_extract_fbank_features = fe._torch_extract_fbank_features


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.replace("×", "x")).strip("-").replace("--", "-")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def subsample(idx: list[int], n: int, seed: int) -> list[int]:
    if not n or n >= len(idx):
        return list(idx)
    return sorted(np.random.default_rng(seed).choice(idx, n, replace=False).tolist())


# -- teacher states (stackslim.mimic.build_data), kept on disk between runs --------------------
PARTS = ("train", "validation", "test", "unlabelled")


def teacher_data(enc, task, boundary, args) -> MimicData:
    """The teacher's cached targets of every split and the pool (`stackslim.mimic.build_data`:
    one teacher pass per clip), saved to args.cache and loaded from there when it matches."""
    pool = args.unlabelled if args.unlabelled and args.unlabelled_clips else None
    key = {"model": args.model, "data": args.data, "task": args.task, "boundary": boundary,
           "splits": {p: task.splits[p] for p in ("train", "validation", "test")},
           "pool": [pool, args.unlabelled_clips, POOL_SEED], "version": 2}
    path = Path(args.cache)
    if path.is_file():
        saved = torch.load(path, weights_only=True)  # tensors, lists, dicts and str only
        if saved.get("key") == key:
            log(f"teacher states loaded from {path}")
            c = {k: (StateCache(**v) if v is not None else None) for k, v in saved["caches"].items()}
            return MimicData(train=c["train"], validation=c["validation"], test=c["test"],
                             y={p: task.y(p) for p in ("train", "validation", "test")},
                             unlabelled=c["unlabelled"], boundary=boundary, num_layers=enc.num_layers)
        log(f"{path} holds other inputs: recomputing")
    t = time.monotonic()
    data = build_data(enc, task, boundary, unlabelled=pool, max_unlabelled=args.unlabelled_clips,
                      seed=POOL_SEED, progress=False)
    log(f"cached teacher states: {data.describe()} in {time.monotonic() - t:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    caches = {k: (getattr(data, k).__dict__ if getattr(data, k) is not None else None) for k in PARTS}
    torch.save({"key": key, "caches": caches}, tmp)
    os.replace(tmp, path)
    return data


# -- pruning (stackslim.prune: the paper's forward and backward orders, teacher head kept) -----
def best_pruning(enc, head, task, strategies: tuple[str, ...], threshold: float = 0.95) -> dict:
    """Most layers deleted (layer 1 kept) at validation capacity >= threshold, over the orders of
    `strategies`, with the teacher's head and no retraining (`stackslim.prune.run_pruning`)."""
    cfg = PruneConfig(task=task.task, strategies=strategies, threshold=threshold, refit=False,
                      own_head=False, save_model=False)
    result, _, _ = run_pruning(enc, task, cfg, head=head, progress=False)
    best = result.best
    return {"order": best["strategy"], "deleted": len(best["deleted_layers"]),
            "deleted_layers": best["deleted_layers"],
            "val_accuracy_curves": {s.name: s.curves["no_refit"].val_accuracy for s in result.strategies},
            "val_accuracy": best["val_accuracy"], "test_accuracy": best["test_accuracy"],
            "threshold": threshold}


def capped(cfg: MimicConfig, minutes: float) -> MimicConfig:
    """`cfg` with its stage's wall-clock cap (`TrainConfig.max_minutes`)."""
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, max_minutes=minutes))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="whisper-base")
    p.add_argument("--data", default="synth-commands")
    p.add_argument("--task", default="word")
    p.add_argument("--grid", choices=("quick", "full", "none"), default="quick",
                   help="none: only the --long variants")
    p.add_argument("--train-clips", type=int, default=0, help="0: the whole train split")
    p.add_argument("--val-clips", type=int, default=400)
    p.add_argument("--unlabelled", default="synth-sentences")
    p.add_argument("--unlabelled-clips", type=int, default=300)
    p.add_argument("--stage1-epochs", type=int, default=20)
    p.add_argument("--stage2-epochs", type=int, default=20)
    p.add_argument("--stage1-minutes", type=float, default=1.5)
    p.add_argument("--stage2-minutes", type=float, default=0.75)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--latency-batch", type=int, default=8)
    p.add_argument("--latency-repeats", type=int, default=7)
    p.add_argument("--cache", default=str(default_cache_dir() / "bench" / "mimic-states.pt"))
    p.add_argument("--out", default=str(ROOT / "results"))
    p.add_argument("--long", action="append", default=[], metavar="KIND,LAYERS,Z,MIN1,MIN2",
                   help="an extra variant with its own stage budgets in minutes, e.g. "
                        "transformer,1,512,8,3 (repeatable)")
    p.add_argument("--distill", type=float, default=0.0, help="MimicConfig.distill for every variant")
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--mask-time", type=float, default=0.0)
    p.add_argument("--mask-channels", type=float, default=0.0)
    p.add_argument("--bf16", action="store_true", help="bf16 autocast for the mimic layers in training")
    p.add_argument("--no-pruned", action="store_true", help="skip the pruned row (kept from --merge)")
    p.add_argument("--prune-strategies", default="forward,backward",
                   help="deletion orders of the pruned row (any of `stackslim prune --strategies`)")
    p.add_argument("--only-missing", action="store_true",
                   help="with --merge: train only the variants that have no row yet (e.g. the rest of --grid full)")
    p.add_argument("--merge", action="store_true",
                   help="keep the rows of the existing mimic.json that this run does not redo "
                        "(each marked with the command that measured it)")
    p.add_argument("--mel", choices=("torch", "numpy"), default="torch",
                   help="Whisper log-mel implementation for every model (see use_torch_mel)")
    args = p.parse_args(argv)
    benchlib.set_threads(args.threads)
    t0 = time.monotonic()
    out = Path(args.out)
    command = "python bench/mimic.py " + " ".join(argv if argv is not None else sys.argv[1:])

    enc = load_encoder(args.model)
    fast_mel = use_torch_mel if args.mel == "torch" else (lambda adapter: None)
    fast_mel(enc)
    task = prepare_task(args.data, args.task, seed=0)
    task.splits["validation"] = subsample(task.splits["validation"], args.val_clips, 1)
    task.splits["train"] = subsample(task.splits["train"], args.train_clips, 2)
    log(f"{enc.name}: {enc.num_layers} layers; {task.describe()}")

    b, binfo = find_boundary(enc, task.dataset.batches(subsample(task.splits["train"], 128, 4), 16),
                             progress=False)
    binfo = {k: v for k, v in binfo.items() if k != "cka"} | {"cka": np.round(binfo["cka"], 4).tolist()}
    log(f"2-layer target: hidden state {b} ({binfo['how']})")
    data = teacher_data(enc, task, b, args)
    n_pool = 0 if data.unlabelled is None else len(data.unlabelled)

    train_cfg = dataclasses.replace(MimicConfig().train, epochs=args.stage1_epochs, batch_size=32, patience=4)
    base_cfg = MimicConfig(train=train_cfg, task_epochs=args.stage2_epochs, head_epochs=50)
    head, head_log = fit_teacher_head(data, task.num_classes, base_cfg, progress=False)
    teacher_acc = accuracy(head, data.test, data.y["test"], which=LAST)
    waves = [task.dataset.load(i) for i in task.splits["test"][: args.latency_batch]]
    teacher = teacher_numbers(enc, head, waves, teacher_acc, repeats=args.latency_repeats)
    log(f"teacher: accuracy {teacher_acc:.4f}, {teacher['latency']['batch1_ms']:.1f} ms/clip at batch 1")

    doc = {
        "command": command,
        "machine": {"cpu": platform.processor() or platform.machine(), **provenance()},
        "inputs": {"model": args.model, "data": args.data, "task": args.task,
                   "clips": {"train": len(data.train), "validation": len(data.validation),
                             "test": len(data.test), "pool": n_pool},
                   "classes": task.num_classes, "chance": task.chance, "boundary": binfo,
                   "grid": args.grid, "stage1": {"epochs": args.stage1_epochs, "minutes": args.stage1_minutes},
                   "stage2": {"epochs": args.stage2_epochs, "minutes": args.stage2_minutes},
                   "log_mel": args.mel, "latency_batch": args.latency_batch, "latency_repeats": args.latency_repeats,
                   "teacher_head": head_log.to_json()},
        "rows": [row_from("teacher", teacher, teacher, teacher_acc, {"kind": "teacher"})],
        "seconds": 0.0,
    }

    recipe = {"distill": args.distill, "temperature": args.temperature, "mask_time": args.mask_time,
              "mask_channels": args.mask_channels, "bf16": args.bf16}
    doc["inputs"]["recipe"] = recipe
    old_rows = []
    if args.merge and (out / "mimic.json").is_file():
        import json

        old = json.loads((out / "mimic.json").read_text())
        old_rows = [dict(r, measured_by=r.get("measured_by", old["command"])) for r in old["rows"]
                    if r["kind"] != "teacher"]

    def flush() -> None:
        doc["seconds"] = round(time.monotonic() - t0, 1)
        names = {r["name"] for r in doc["rows"]}
        kinds = {r["kind"] for r in doc["rows"]}
        kept = [r for r in old_rows if r["name"] not in names and r["kind"] not in kinds & {"pruned"}]
        out_doc = dict(doc, rows=doc["rows"] + kept)
        write_json(out / "mimic.json", out_doc)
        write_atomic(out / "mimic.md", markdown(out_doc))

    teacher_fn = teacher_logits(enc, head)

    def paired() -> dict:
        return clip_latency(teacher_fn, waves, len(waves), repeats=args.latency_repeats)

    if not args.no_pruned:
        pr = best_pruning(enc, head, task, tuple(args.prune_strategies.split(",")))
        pruned_enc = enc.without_layers([i - 1 for i in pr["deleted_layers"]])
        fast_mel(pruned_enc)
        ref = paired()
        pn = teacher_numbers(pruned_enc, head, waves, pr["test_accuracy"], repeats=args.latency_repeats)
        doc["rows"].append(row_from(f"pruned ({pr['order']}, layers {pr['deleted_layers'] or 'none'} deleted)",
                                    pn, teacher, teacher_acc, {"kind": "pruned", "pruning": pr}, ref))
        del pruned_enc
        log(f"pruned: {pr}")
    flush()

    variants = [(k, n, z, b, args.stage1_minutes, args.stage2_minutes)
                for k, n, z, b in {"quick": QUICK, "full": FULL, "none": []}[args.grid]]
    for spec in args.long:
        k, n, z, m1, m2 = spec.split(",")
        variants.append((k, int(n), int(z), False, float(m1), float(m2)))
    for kind, layers, z, baseline, min1, min2 in variants:
        name = f"{kind} × {layers}, z={z}" + (" (baseline: no stage 1)" if baseline else "")
        if args.distill:
            name += f", distilled (α {args.distill:g}, τ {args.temperature:g})"
        if args.mask_time or args.mask_channels:
            name += f", masked ({args.mask_time:g} / {args.mask_channels:g})"
        if (min1, min2) != (args.stage1_minutes, args.stage2_minutes):
            name += f" (budget {min1:g} + {min2:g} min)"
        if args.only_missing and name in {r["name"] for r in old_rows}:
            continue
        cfg = MimicConfig(kind=kind, layers=layers, hidden=z, baseline=baseline, train=train_cfg,
                          task_epochs=args.stage2_epochs, **recipe)
        model = MimicModel.from_teacher(enc, head, kind, layers, z, class_names=task.names, seed=0)
        t = time.monotonic()
        s1 = None
        if not baseline:
            s1 = stage1(model, data, capped(cfg, min1), progress=False)
        s2 = stage2(model, data, capped(cfg, min2), progress=False)
        secs = time.monotonic() - t
        acc = accuracy_on(model, data.test, data.y["test"])
        folder = Path(args.cache).parent / "mimic-models" / slug(name)
        model.save(folder)
        again = MimicModel.load(folder)  # the saved artefact is what is timed
        fast_mel(again.front)
        ref = paired()
        numbers = mimic_numbers(again, waves, folder, acc, repeats=args.latency_repeats)
        training = {"stage1_epochs": s1.epochs_run if s1 else 0, "stage1_stopped_by": s1.stopped_by if s1 else None,
                    "stage1_val_mse": -s1.best_score if s1 else None,
                    "stage2_epochs": s2.epochs_run, "stage2_stopped_by": s2.stopped_by,
                    "stage2_val_accuracy": s2.best_score, "seconds": round(secs, 1)}
        row = row_from(name, numbers, teacher, teacher_acc,
                       {"kind": kind, "layers": layers, "hidden": z, "baseline": baseline, "recipe": recipe,
                        "training": training | {"budget_minutes": [min1, min2]},
                        "saved_to": str(folder)}, ref)
        doc["rows"].append(row)
        log(f"{name}: accuracy {acc:.4f} capacity {row['capacity']:.1%}, "
            f"{row['speedup_batch1']:.1f}x faster, stack cut {row['stack_reduction']:.1%} ({secs:.0f} s)")
        flush()
    flush()
    log(f"done in {doc['seconds'] / 60:.1f} min -> {out / 'mimic.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
