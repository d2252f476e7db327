"""Layer-wise reconstruction alone on a shared Whisper encoder: WER right after conversion and
after each round of `share.local.fit_local`, with every layer's output error on held-out clips.

Inputs: MODEL (whisper-tiny.en), converted with `to_residual(groups=K, size=S, init="aware")`
calibrated on 64 clips of synth-sentences' pool split; the fit reads the teacher's states of
NPOOL − 16 pool clips (and, with ``--augment N``, N augmented copies of each: speed,
reverberation, noise; `stackslim.data.augment`), each followed by silence (`pad_silence`: up to
max(6 s, clip + 3.5 s)); 16 more pool clips measure the layer errors (chained: from state 0
through the student); WER on ``--wer-clips`` (30) eval clips of synth-sentences (sentences
and voices never fitted on; results written before the pool left out the eval voices had them
in it), each padded to Whisper's 30 s window, with a bootstrap 95% interval. ``--rounds`` rounds (default 2)
of EPOCHS epochs each (``--lr``, default 3e-4; batch 8, sequential; each round restarts the
learning-rate schedule). Prints one line per stage and writes bench/results/NAME.json and .md (``--name``,
default asr_local).

    python bench/asr_local.py whisper-tiny.en 0.5 4 4 120     # MODEL SIZE K EPOCHS NPOOL
    python bench/asr_local.py whisper-tiny.en 0.5 4 4 120 --rounds 4 --lr 1e-3 --name asr_local-lr1e-3
    python bench/asr_local.py whisper-tiny.en 0.5 4 8 120 --rounds 1 --augment 2 --name asr_local-aug2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine, write_results

from stackslim.data import unlabelled_clips
from stackslim.data.augment import with_copies
from stackslim.evaluate import load_tokenizer, sentence_clips, whisper_wer
from stackslim.models.io import load_encoder
from stackslim.share import to_residual
from stackslim.share.asr import padded_batches
from stackslim.share.local import fit_local, layer_errors
from stackslim.share.recover import distill_cache
from stackslim.train import TrainConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("size", type=float)
    ap.add_argument("k", type=int)
    ap.add_argument("epochs", type=int)
    ap.add_argument("npool", type=int)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--name", default="asr_local")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--augment", type=int, default=0,
                    help="augmented copies of each fit clip (stackslim.data.augment)")
    ap.add_argument("--wer-clips", type=int, default=30)
    a = ap.parse_args()
    model, size, k, epochs, npool = a.model, a.size, a.k, a.epochs, a.npool
    torch.set_num_threads(a.threads)
    t0 = time.time()
    enc = load_encoder(model)
    whisper, tok = load_tokenizer(model)
    ds, idx = unlabelled_clips("synth-sentences", npool, 0)
    waves = [ds.load(i) for i in idx]
    fit_w, held_w = waves[:-16], waves[-16:]
    batches = lambda ws: [(ws[i : i + 8], list(range(i, i + min(8, len(ws) - i))))  # noqa: E731
                          for i in range(0, len(ws), 8)]
    cache = distill_cache(enc, padded_batches(with_copies(batches(fit_w), a.augment)), states="all",
                          progress=False)
    held = distill_cache(enc, padded_batches(batches(held_w)), states="all", progress=False)
    ev_w, refs = sentence_clips("synth-sentences", a.wer_clips)
    rows = []

    def stage(name: str, student, seconds: float) -> None:
        w = whisper_wer(student, whisper, tok, ev_w, refs)
        errs = layer_errors(student, held) if student is not enc else []
        rows.append({"stage": name, "wer": w["wer"], "interval": w["interval"],
                     "chained_errors": [e["chained"] for e in errs], "fit_seconds": seconds,
                     "examples": w["hypotheses"][:2]})
        print(name, w["wer"], w["interval"], [round(e["chained"], 4) for e in errs], seconds,
              w["hypotheses"][:2], flush=True)

    stage("teacher", enc, 0.0)
    s = to_residual(enc, groups=k, size=size, init="aware", calib=fit_w[:64])
    stage("converted", s, 0.0)
    for r in range(a.rounds):
        t = time.time()
        fit_local(s, cache, TrainConfig(epochs=epochs, lr=a.lr, batch_size=8), progress=False)
        stage(f"layer-wise fit, {(r + 1) * epochs} epochs", s, time.time() - t)
    cmd = f"python bench/asr_local.py {' '.join(sys.argv[1:])}"
    doc = {"command": cmd, "machine": machine(), "stack_ratio": s.size_report()["stack_ratio"],
           "fit_clips": len(fit_w), "augmented_copies": a.augment, "fit_rows": len(cache),
           "rows": rows, "seconds": time.time() - t0}
    md = [f"`{cmd}` ({model}, shared at {100 * doc['stack_ratio']:.1f}% of the stack, {len(fit_w)} fit clips"
          f"{f' and {a.augment} augmented copies of each' if a.augment else ''}, lr {a.lr:g}, {a.wer_clips} WER clips)", "",
          "| stage | WER % [95% CI] | chained output error per layer | fit s |", "|---|---|---|---|"]
    md += [f"| {r['stage']} | {100 * r['wer']:.1f} [{100 * r['interval'][0]:.1f}, {100 * r['interval'][1]:.1f}] | "
           f"{', '.join(f'{e:.3f}' for e in r['chained_errors'])} | {r['fit_seconds']:.0f} |" for r in rows]
    write_results(a.name, doc, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
