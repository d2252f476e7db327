"""ResidualTransformer sharing: the paper's comparison from scratch (small), and the plain
conversion of the real whisper-base with a short recovery.

    python bench/share.py                      # both parts (about an hour on 2 idle CPU cores)
    python bench/share.py --part scratch       # only the from-scratch comparison
    python bench/share.py --part whisper       # only the whisper-base conversion
    python bench/share.py --quick              # a smoke run of both (minutes)

Part "scratch" (Wang & Li 2024, Table 1, at a small scale): a 12-layer Whisper-style encoder
(d = 128, feed-forward 512, 4 heads, log-mel + conv front end) and the paper's head, trained
from random weights on the `synth-commands` word task, by default on the ten Speech Commands
keywords (all their 1800 clips, speaker-disjoint splits), 20 epochs with a warm-up and cosine
decay of the learning rate: the 35 words need far more
training than minutes of a 2-core CPU (`--scratch-words 35`, `--scratch-epochs`):
dense against the residual layer with K=3, r ∈ {2, 16}, with and without the diagonal, and
K=6 r=16; biases and norms shared per group (the paper's accounting). Every variant gets the
same data, seed, epochs and learning rate; the best validation epoch is tested.

Part "whisper": the plain conversion (group mean + truncated SVD, per-layer biases and norms)
of whisper-base for K ∈ {2, 3, 6} and r ∈ {16, 64}: size, reconstruction errors, keyword
accuracy on `synth-commands` through the teacher's head (fitted on the teacher's states),
WER on `synth-sentences` (eval split, original decoder), before and after a recovery by
distillation of a few minutes (all hidden states + task loss, on the commands' train split and
unlabelled pool sentences). Recovery budgets are deliberately small (default 2 min per
variant on a shared 2-core CPU), far from the paper's 10k-hour training.

Writes bench/results/share.json (`command`, `machine`, `inputs`, `rows`) and share.md; a run of
one part keeps the other part's rows from an earlier run.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

import benchlib  # (bench/benchlib.py)
from stackslim.heads import accuracy, fit_head, prepare_task
from stackslim.models import load_encoder, wrap_model
from stackslim.results import provenance, write_atomic, write_json
from stackslim.share import from_config, to_residual
from stackslim.evaluate import load_tokenizer, sentence_clips, wave_accuracy, whisper_wer
from stackslim.evaluate import stack_accuracy as student_accuracy
from stackslim.share.recover import concat_caches, distill_cache, last_state_error, recover
from stackslim.share.scratch import train_from_scratch
from stackslim.share.size import disk_report, latency_report
from stackslim.train import TrainConfig

OUT = Path(__file__).parent / "results"
KWS_WORDS = ("yes no up down left right on off stop go zero one two three four five six seven "
             "eight nine bed bird cat dog happy house marvin sheila tree wow backward forward "
             "follow learn visual").split()  # the ten keywords of Speech Commands first
SCRATCH_VARIANTS = [  # (K, r, diag); K = None: the dense baseline
    (None, None, None), (3, 2, True), (3, 2, False), (3, 16, True), (3, 16, False), (6, 16, True)]
WHISPER_VARIANTS = [(k, r) for k in (2, 3, 6) for r in (16, 64)]


def scratch_config(layers: int = 12, d: int = 128):
    from transformers import WhisperConfig

    return WhisperConfig(
        vocab_size=64, num_mel_bins=80, d_model=d, encoder_layers=layers, decoder_layers=1,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=4 * d,
        decoder_ffn_dim=4 * d, max_source_positions=50, max_target_positions=8, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, pad_token_id=0, bos_token_id=1,
        eos_token_id=2, decoder_start_token_id=1)


def run_scratch(args) -> list[dict]:
    from stackslim.data import load_dataset

    ds = load_dataset("synth-commands")
    words = set(KWS_WORDS[: args.scratch_words])
    ds = ds.subset([i for i, c in enumerate(ds.clips) if c.label in words])
    task = prepare_task(ds, "word", seed=0, max_clips=args.scratch_clips or None)
    load = lambda part: [task.dataset.load(i) for i in task.splits[part]]  # noqa: E731
    waves = {p: load(p) for p in ("train", "validation", "test")}
    print(f"[scratch] {task.describe()}", flush=True)
    rows = []
    for k, r, diag in SCRATCH_VARIANTS:
        name = "dense" if k is None else f"K={k} r={r} {'diag' if diag else 'no diag'}"
        torch.manual_seed(0)
        if k is None:
            from transformers import WhisperForConditionalGeneration

            enc = wrap_model(WhisperForConditionalGeneration(scratch_config(d=args.scratch_width)),
                             name="scratch-dense")
            stack, dense_stack = enc.num_params(stack_only=True), enc.num_params(stack_only=True)
        else:
            enc = from_config(scratch_config(d=args.scratch_width), groups=k, rank=r, diag=diag,
                              share_norms=True)
            rep = enc.size_report()
            stack, dense_stack = rep["stack_params"], rep["dense_stack_params"]
        cfg = TrainConfig(epochs=args.scratch_epochs, batch_size=args.scratch_batch, lr=args.scratch_lr,
                          patience=args.scratch_epochs, seed=0, schedule=args.scratch_schedule)
        t0 = time.monotonic()
        head, log = train_from_scratch(enc, task.num_classes, waves["train"], task.y("train"),
                                       waves["validation"], task.y("validation"), cfg)
        secs = time.monotonic() - t0
        acc = wave_accuracy(enc, head, waves["test"], task.y("test"))
        row = {"part": "scratch", "variant": name, "K": k, "rank": r, "diag": diag,
               "share_norms": None if k is None else True, "stack_params": stack,
               "dense_stack_params": dense_stack, "stack_size_pct": round(100 * stack / dense_stack, 2),
               "encoder_params": enc.num_params(), "test_accuracy_pct": round(100 * acc, 2),
               "best_val_accuracy_pct": round(100 * log.best_score, 2), "best_epoch": log.best_epoch + 1,
               "epochs_run": log.epochs_run, "train_seconds": round(secs, 1),
               "settings": {k: getattr(args, f"scratch_{k}") for k in ("width", "words", "clips", "epochs",
                                                                          "batch", "lr", "schedule")}}
        print(f"[scratch] {row}", flush=True)
        rows.append(row)
    dense_acc = rows[0]["test_accuracy_pct"]
    for row in rows[1:]:
        row["accuracy_gap_points"] = round(dense_acc - row["test_accuracy_pct"], 2)
        row["goal_met"] = row["stack_size_pct"] <= 40 and row["accuracy_gap_points"] <= 2
    return rows


def _eval(student, head, test_cache, y_test, wer_ctx) -> dict:
    out = {"accuracy_pct": round(100 * student_accuracy(student, head, test_cache, y_test), 2),
           "last_state_error": round(last_state_error(student, test_cache), 5)}
    if wer_ctx is not None:
        model, tok, waves, refs = wer_ctx
        out["wer_pct"] = round(100 * whisper_wer(student, model, tok, waves, refs)["wer"], 2)
    return out


def whisper_setup(kws_clips: int, pool_clips: int, wer_clips: int, tag: str = "whisper") -> dict:
    """Everything the whisper-base benches share: the teacher, the word task (seed 0), teacher
    states (all states of the train split + unlabelled pool sentences for distillation; 0 and L
    of validation and test), the teacher's head, the WER clips, and the teacher's own row."""
    teacher = load_encoder("whisper-base")
    _, tok = load_tokenizer("whisper-base")
    task = prepare_task("synth-commands", "word", seed=0, max_clips=kws_clips)
    print(f"[{tag}] {task.describe()}", flush=True)
    t0 = time.monotonic()
    train_cmd = distill_cache(teacher, task.dataset.batches(task.splits["train"], 16),
                              total=len(task.splits["train"]))
    val_cache = task.cache(teacher, "validation")
    test_cache = task.cache(teacher, "test")
    y_train, y_val, y_test = task.y("train"), task.y("validation"), task.y("test")
    head, _ = fit_head(train_cmd, y_train, val_cache, y_val, task.num_classes, TrainConfig(epochs=30))
    from stackslim.data import load_dataset

    sents = load_dataset("synth-sentences")
    pool = [i for i, c in enumerate(sents.clips) if c.get("split") == "pool"][:pool_clips]
    train_pool = distill_cache(teacher, sents.batches(pool, 8), total=len(pool))
    train_cache = concat_caches(train_cmd, train_pool)
    labels = torch.cat([y_train, torch.full((len(pool),), -1, dtype=torch.long)])
    waves, refs = sentence_clips("synth-sentences", wer_clips)
    wer_ctx = (teacher.model, tok, waves, refs)
    teacher_row = {"part": tag, "variant": "whisper-base (teacher)",
                   "accuracy_pct": round(100 * accuracy(head, test_cache, y_test), 2),
                   "wer_pct": round(100 * whisper_wer(teacher, teacher.model, tok, waves, refs)["wer"], 2),
                   "stack_params": teacher.num_params(stack_only=True),
                   "encoder_params": teacher.num_params(), "setup_seconds": round(time.monotonic() - t0, 1)}
    return {"teacher": teacher, "task": task, "head": head, "train_cache": train_cache,
            "labels": labels, "val_cache": val_cache, "test_cache": test_cache, "y_val": y_val,
            "y_test": y_test, "wer_ctx": wer_ctx, "teacher_row": teacher_row, "sents": sents,
            "pool": pool}


def run_whisper(args) -> list[dict]:
    ctx = whisper_setup(args.kws_clips, args.pool_clips, args.wer_clips)
    teacher, task, head, teacher_row = ctx["teacher"], ctx["task"], ctx["head"], ctx["teacher_row"]
    train_cache, labels, val_cache, test_cache = (ctx["train_cache"], ctx["labels"], ctx["val_cache"],
                                                  ctx["test_cache"])
    y_val, y_test, wer_ctx = ctx["y_val"], ctx["y_test"], ctx["wer_ctx"]
    lat_waves = [task.dataset.load(i) for i in task.splits["test"][:8]]
    teacher_row["latency_ms"] = latency_report({"dense": teacher}, lat_waves, repeats=3)["dense"]
    print(f"[whisper] {teacher_row}", flush=True)
    rows = [teacher_row]
    for k, r in WHISPER_VARIANTS:
        t1 = time.monotonic()
        student = to_residual(teacher, groups=k, rank=r, diag=True, share_norms=False)
        conv_s = time.monotonic() - t1
        size = student.size_report()
        row = {"part": "whisper", "variant": f"K={k} r={r}", "K": k, "rank": r, "diag": True,
               "share_norms": False, "groups": size["groups"], "stack_params": size["stack_params"],
               "stack_size_pct": round(100 * size["stack_ratio"], 2),
               "encoder_size_pct": round(100 * size["encoder_ratio"], 2),
               "convert_seconds": round(conv_s, 1),
               "rel_error_mean": {m.split(".")[-1]: round(v["mean"], 4)
                                  for m, v in student.conversion_summary().items()}}
        row["before"] = _eval(student, head, test_cache, y_test, wer_ctx)
        cfg = TrainConfig(epochs=args.recover_epochs, batch_size=16, lr=args.recover_lr, weight_decay=0.0,
                          patience=args.recover_epochs, max_minutes=args.recover_minutes, seed=0)
        log = recover(student, train_cache, cfg, states="all", head=head, labels=labels,
                      val_cache=val_cache, val_labels=y_val)
        row["recovery"] = {"minutes_budget": args.recover_minutes, "seconds": round(log.seconds, 1),
                           "epochs_run": log.epochs_run, "stopped_by": log.stopped_by,
                           "kept_converted": log.kept_initial,
                           "train_clips": len(train_cache)}
        row["after"] = _eval(student, head, test_cache, y_test, wer_ctx)
        dense = student.materialize()
        disk = disk_report(student, dense)
        row["compact_encoder_mb"] = round(disk["compact_encoder_bytes"] / 2**20, 2)
        row["dense_encoder_mb"] = round(disk["dense_encoder_bytes"] / 2**20, 2)
        row["latency_ms"] = latency_report({"dense": teacher, "factored": student,
                                            "materialized": dense}, lat_waves, repeats=3)
        print(f"[whisper] {row}", flush=True)
        rows.append(row)
        del student, dense
    return rows


def fmt(v) -> str:
    return "" if v is None else (f"{v:.2f}" if isinstance(v, float) else str(v))


def to_markdown(res: dict) -> str:
    lines = ["# ResidualTransformer sharing (`stackslim.share`)", "", res["notes"], ""]
    sc = [r for r in res["rows"] if r["part"] == "scratch"]
    if sc:
        st = sc[0]["settings"]
        lines += [f"## From scratch: 12-layer encoder (d={st['width']}, ffn {4 * st['width']}) on synth-commands", "",
                  f"`{sc[0].get('command', res['command'])}`", "",
                  f"Words: {st['words']} of the 35 (KWS_WORDS), every clip of them, "
                  f"speaker-disjoint splits; {st['epochs']} epochs, "
                  f"lr {st['lr']} ({st.get('schedule', 'constant')}"
                  f"{' with 5% warm-up' if st.get('schedule') == 'cosine' else ''}), batch {st['batch']}, same seed "
                  "for every variant. "
                  "Stack size: unique parameters of the 12 layers (biases and norms shared per group) "
                  "as % of the dense stack. Accuracy: test split, best validation epoch.", "",
                  "| variant | stack params | stack size % | test accuracy % | gap to dense (points) | "
                  "≤40% and ≤2 points | best epoch / run | train s |", "|---|---|---|---|---|---|---|---|"]
        for r in sc:
            lines.append(f"| {r['variant']} | {r['stack_params']:,} | {fmt(r['stack_size_pct'])} | "
                         f"{fmt(r['test_accuracy_pct'])} | {fmt(r.get('accuracy_gap_points'))} | "
                         f"{fmt(r.get('goal_met'))} | {r['best_epoch']} / {r['epochs_run']} | {fmt(r['train_seconds'])} |")
        lines.append("")
    wh = [r for r in res["rows"] if r["part"] == "whisper"]
    if wh:
        t = wh[0]
        lines += ["## Plain conversion of whisper-base (6 layers, d=512), diag on, per-layer biases/norms", "",
                  f"`{t.get('command', res['command'])}`", "",
                  f"Teacher: keyword accuracy {fmt(t['accuracy_pct'])}%, WER {fmt(t['wer_pct'])}%, "
                  f"stack {t['stack_params']:,} parameters, CPU latency "
                  f"{t['latency_ms']['batch1_ms']:.1f} ms/clip (batch 1, 1 s clips).", "",
                  "Relative reconstruction error ‖W−Ŵ‖/‖W‖, mean over layers, per matrix (q k v o fc1 fc2). "
                  "Accuracy and WER in %, before → after the recovery. Latency: median ms per 1 s clip at "
                  "batch 1, dense / factored / materialized, measured interleaved.", "",
                  "| variant | stack size % | encoder MB (compact / dense) | rel. error q k v o fc1 fc2 | "
                  "KWS accuracy % | WER % | recovery | latency ms |", "|---|---|---|---|---|---|---|---|"]
        for r in wh[1:]:
            e = " ".join(f"{v:.2f}" for v in r["rel_error_mean"].values())
            b, a, rc = r["before"], r["after"], r["recovery"]
            lines.append(f"| {r['variant']} | {fmt(r['stack_size_pct'])} | {r['compact_encoder_mb']:.1f} / "
                         f"{r['dense_encoder_mb']:.1f} | {e} | {fmt(b['accuracy_pct'])} → {fmt(a['accuracy_pct'])} | "
                         f"{fmt(b.get('wer_pct'))} → {fmt(a.get('wer_pct'))} | {rc['seconds']:.0f} s, "
                         f"{rc['epochs_run']} ep{' (kept converted)' if rc.get('kept_converted') else ''} | " + " / ".join(
                             f"{r['latency_ms'][k]['batch1_ms']:.0f}" for k in ("dense", "factored", "materialized"))
                         + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=["all", "scratch", "whisper"], default="all")
    p.add_argument("--quick", action="store_true", help="tiny settings: a smoke run")
    p.add_argument("--scratch-words", type=int, default=10, help="first N of KWS_WORDS (35: all)")
    p.add_argument("--scratch-clips", type=int, default=0, help="seeded subset (0: all clips of the words)")
    p.add_argument("--scratch-width", type=int, default=128, help="d (feed-forward 4d)")
    p.add_argument("--scratch-epochs", type=int, default=20)
    p.add_argument("--scratch-batch", type=int, default=16)
    p.add_argument("--scratch-lr", type=float, default=1e-3)
    p.add_argument("--scratch-schedule", choices=("constant", "cosine"), default="cosine",
                   help="learning rate over the steps (TrainConfig.schedule)")
    p.add_argument("--kws-clips", type=int, default=1200)
    p.add_argument("--pool-clips", type=int, default=120)
    p.add_argument("--wer-clips", type=int, default=30)
    p.add_argument("--recover-minutes", type=float, default=2.0)
    p.add_argument("--recover-epochs", type=int, default=20)
    p.add_argument("--recover-lr", type=float, default=3e-4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    if args.quick:
        args.scratch_clips, args.scratch_epochs, args.kws_clips = 120, 1, 200
        args.pool_clips, args.wer_clips, args.recover_minutes = 8, 4, 0.2
    benchlib.set_threads(args.threads)
    # a smoke run must not overwrite the results: it writes to the temp folder
    out_json = Path(tempfile.gettempdir()) / "share_quick.json" if args.quick else OUT / "share.json"
    old = json.loads(out_json.read_text()) if out_json.exists() else {"rows": []}
    t0 = time.monotonic()
    command = " ".join(["python bench/share.py", *(sys.argv[1:] if argv is None else argv)])
    rows = []
    for part, fn in (("scratch", run_scratch), ("whisper", run_whisper)):
        if args.part in ("all", part):
            rows += [{**r, "command": command} for r in fn(args)]
        else:  # kept from an earlier run, with the command that made them
            rows += [r for r in old["rows"] if r["part"] == part]
    res = {"command": command,
           "machine": {**provenance(), "platform": platform.platform()},
           "inputs": {**vars(args), "scratch_variants": SCRATCH_VARIANTS,
                      "whisper_variants": WHISPER_VARIANTS},
           "seconds": round(time.monotonic() - t0, 1),
           "notes": ("CPU only, on a 2-core machine shared with other jobs (torch threads: --threads in "
                     "each part's command, default 2): times are indicative. Recovery budgets are "
                     "minutes, not the paper's training."),
           "rows": rows}
    write_json(out_json, res)
    write_atomic(out_json.with_suffix(".md"), to_markdown(res))
    print(to_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
