"""Shared Whisper encoders that keep transcribing: size budget + layer-wise fit + decoder loss,
against one rank for every map recovered end to end, side by side in one run.

For each model and size s (the shared stack's parameters / the dense stack's):
- ``budget``: `stackslim share --size s --init aware` (ranks allocated per layer and map),
  then the layer-wise fit (`--local-epochs`, sequential), then the end-to-end recovery with the
  decoder loss (`--asr-weight 1 --recover-states last --epochs E`); ``--augment N`` adds N
  augmented copies of each sentence to both (`share --augment`);
- ``uniform``: the same size with one rank for every map (the largest that fits), `--init
  aware`, recovered end to end the same way, without the layer-wise fit or the copies (the
  earlier method).
Both read synth-commands' train split (the KWS task) and N clips of synth-sentences' pool split
(never its eval split), whole, followed by silence. WER: the eval split of synth-sentences
(`--wer-clips` clips: sentences and voices the fit never hears; results written before the pool
left out the eval voices had those voices in the pool), each clip padded to Whisper's 30 s
window, Whisper's English normaliser, bootstrap 95% interval; KWS accuracy on synth-commands'
test split with the teacher's head. Each stage gives its wall-clock minutes on this machine
(shared with other jobs: compare within one run).

    python bench/asr.py [--models whisper-tiny.en,whisper-base] [--sizes 0.5,0.35]
                        [--local-epochs 10] [--epochs 2] [--unlabelled 200] [--wer-clips 120]
                        [--max-clips 0] [--augment 0] [--name asr]

Writes bench/results/NAME.json and NAME.md (default asr).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import cpu_seconds, machine, set_threads, write_results

from stackslim.models import load_encoder
from stackslim.share import ShareConfig, run
from stackslim.share.inits import layer_matrices
from stackslim.share.ranks import fixed_params
from stackslim.train import TrainConfig

GROUPS = {"whisper-tiny.en": {0.5: 4, 0.35: 4}, "whisper-base": {0.5: 3, 0.35: 6}}


def uniform_rank(model: str, k: int, size: float) -> int:
    """The largest single rank whose shared stack (groups of k) is at most `size` of the dense."""
    enc = load_encoder(model)
    layers = list(enc.layers)
    part = [list(range(i, min(i + k, len(layers)))) for i in range(0, len(layers), k)]
    maps = layer_matrices(enc.family)
    dense = sum(p.numel() for layer in layers for p in layer.parameters())
    per_rank = sum(sum(layer.get_submodule(m).weight.shape) for layer in layers for m in maps)
    return max(0, (int(size * dense) - fixed_params(layers, part, maps, True, False)) // per_rank)


def one(model: str, name: str, cfg: ShareConfig) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-asr-") as tmp:
        c0, t0 = cpu_seconds(), time.monotonic()
        r = run(model, "synth-commands", Path(tmp) / "run", cfg, progress=False)
        cpu_min, wall_min = (cpu_seconds() - c0) / 60, (time.monotonic() - t0) / 60
    stages = [("converted", r.before, 0.0)]
    if r.local is not None:
        stages.append(("layer-wise fit", r.local["eval"], r.local["seconds"] / 60))
    if r.after is not None:
        stages.append(("end to end", r.after, r.recovery["seconds"] / 60))
    return {"model": model, "variant": name, "size": r.size["stack_ratio"],
            "config": {k: r.config[k] for k in ("group", "rank", "size", "init", "local_epochs",
                                                 "asr_weight", "max_unlabelled", "augment")},
            "teacher": {"wer": r.teacher["wer"], "interval": r.teacher.get("wer_interval"),
                        "accuracy": r.teacher["accuracy"]},
            "stages": [{"stage": s, "wer": e["wer"], "interval": e.get("wer_interval"),
                        "accuracy": e["accuracy"], "minutes": m} for s, e, m in stages],
            "layer_errors": r.layer_errors, "allocation": r.allocation,
            "cpu_minutes": cpu_min, "wall_minutes": wall_min}


def table(rows: list[dict]) -> str:
    out = ["| model | variant | stack size | stage | WER % [95% CI] | Δ WER (points) | KWS acc | stage min |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["teacher"]
        lo, hi = t["interval"] or (float("nan"), float("nan"))
        out.append(f"| {r['model']} | teacher | 100% | — | {100 * t['wer']:.1f} [{100 * lo:.1f}, "
                   f"{100 * hi:.1f}] | — | {t['accuracy']:.3f} | — |")
        for s in r["stages"]:
            lo, hi = s["interval"] or (float("nan"), float("nan"))
            out.append(f"| {r['model']} | {r['variant']} | {100 * r['size']:.1f}% | {s['stage']} | "
                       f"{100 * s['wer']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] | "
                       f"{100 * (s['wer'] - t['wer']):+.1f} | {s['accuracy']:.3f} | {s['minutes']:.1f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="whisper-tiny.en,whisper-base")
    ap.add_argument("--sizes", default="0.5,0.35")
    ap.add_argument("--local-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=2, help="end-to-end recovery epochs")
    ap.add_argument("--unlabelled", type=int, default=200, help="synth-sentences pool clips")
    ap.add_argument("--wer-clips", type=int, default=120)
    ap.add_argument("--calib", type=int, default=128)
    ap.add_argument("--max-clips", type=int, default=0, help="synth-commands clips, all splits (0: all)")
    ap.add_argument("--variants", default="budget,uniform")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="asr", help="results file name under bench/results/")
    ap.add_argument("--augment", type=int, default=0,
                    help="budget variant: augmented copies of each sentence (share --augment)")
    a = ap.parse_args()
    set_threads(a.threads)
    rows = []
    for model in a.models.split(","):
        for size in (float(s) for s in a.sizes.split(",")):
            k = GROUPS.get(model, {}).get(size, 3)
            common = dict(group=k, init="aware", calib=a.calib, unlabelled="synth-sentences",
                          max_unlabelled=a.unlabelled, asr_weight=1.0, recover_states="last",
                          max_clips=a.max_clips,
                          wer_clips=a.wer_clips, latency_clips=0,
                          train=TrainConfig(epochs=a.epochs, lr=1e-4, batch_size=16,
                                            weight_decay=0.0, patience=3))
            for variant in a.variants.split(","):
                if variant == "budget":
                    cfg = ShareConfig(size=size, local_epochs=a.local_epochs, augment=a.augment, **common)
                else:
                    cfg = ShareConfig(rank=uniform_rank(model, k, size), **common)
                rows.append(one(model, f"{variant} K{k}", cfg))
                print(table(rows[-1:]), flush=True)
    doc = {"machine": machine(), "args": vars(a), "rows": rows}
    md = ("# Shared Whisper encoders that keep transcribing\n\n"
          f"`python bench/asr.py --models {a.models} --sizes {a.sizes} --local-epochs "
          f"{a.local_epochs} --epochs {a.epochs} --unlabelled {a.unlabelled} --wer-clips "
          f"{a.wer_clips} --max-clips {a.max_clips} --variants {a.variants}"
          + (f" --augment {a.augment}" if a.augment else "")
          + (f" --threads {a.threads}" if a.threads != 2 else "")
          + (f" --name {a.name}" if a.name != "asr" else "") + "` (inputs and method: the script's docstring).\n\n" + table(rows) + "\n")
    write_results(a.name, doc, md)


if __name__ == "__main__":
    main()
