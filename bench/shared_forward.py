"""Benchmark: speed of the shared (ResidualTransformer) forward against the dense one.

    python bench/shared_forward.py                 # whisper-base shapes, about 2 minutes
    python bench/shared_forward.py --repeats 5     # quicker, noisier

A Whisper encoder of whisper-base's shapes (d 512, 8 heads, FFN 2048, 6 layers; random
weights: speed does not depend on the values) and its shared form (`to_residual`, groups of
K = 3 adjacent layers, rank 16, per-layer diagonal) run side by side in one process, one
thread, interleaved round by round; median of `--repeats` rounds after a warm-up:

- ``linear``: one FFN-in map (512 → 2048) on n rows: dense `nn.Linear` vs `ResidualLinear`
  in its three inference forms, ``plain`` (three products summed), ``fused`` (one output
  buffer, `addmm` with the bias, the low-rank product and the diagonal accumulated in place)
  and ``small-first`` (bias, low-rank and diagonal first, the large product accumulated last);
- ``stack``: the whole stack (`Encoder.stack_forward`) on a (B, T, 512) input: the dense
  teacher vs the shared model in each form.

``speed_vs_dense`` = dense time / variant time (1.0 = as fast as dense; the goal is >= 0.95).
Writes bench/results/shared_forward.json and bench/results/shared_forward.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))

import benchlib  # noqa: E402

FORMS = ("plain", "fused", "small-first")  # ResidualLinear.impl values
SHAPES = {"linear": [(1, 50), (1, 250), (8, 250)], "stack": [(1, 50), (1, 250), (8, 250)]}


def build(groups: int, rank: int):
    """(dense encoder, shared encoder) of whisper-base's encoder shapes."""
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    from stackslim.models import wrap_model
    from stackslim.share import to_residual

    torch.manual_seed(0)
    cfg = WhisperConfig(vocab_size=64, num_mel_bins=80, d_model=512, encoder_layers=6, decoder_layers=1,
                        encoder_attention_heads=8, decoder_attention_heads=8, encoder_ffn_dim=2048,
                        decoder_ffn_dim=64, max_source_positions=1500, max_target_positions=32,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    dense = wrap_model(WhisperForConditionalGeneration(cfg).eval(), name="whisper-base-shapes")
    return dense, to_residual(dense, groups=groups, rank=rank, diag=True).eval()


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()

    import torch

    from stackslim.share.layer import ResidualLinear

    torch.set_num_threads(1)
    default = ResidualLinear.impl
    mach = benchlib.machine()
    dense, shared = build(args.groups, args.rank)
    lin_d, lin_s = dense.layers[0].fc1, shared.layers[0].fc1

    def variants(part: str, B: int, T: int):
        x = torch.randn(B, T, 512)
        n = torch.full((B,), T)
        if part == "linear":
            return {"dense": lambda: lin_d(x), **{f: lambda: lin_s(x) for f in FORMS}}
        return {"dense": lambda: dense.stack_forward(x, n, keep=False),
                **{f: lambda: shared.stack_forward(x, n, keep=False) for f in FORMS}}

    rows = []
    with torch.inference_mode():
        for part, shapes in SHAPES.items():
            for B, T in shapes:
                fns = variants(part, B, T)
                times: dict[str, list[float]] = {k: [] for k in fns}
                reps = args.repeats if part == "stack" else args.repeats * 10
                for r in range(reps + 2):  # two warm-up rounds, then interleaved rounds
                    for name, fn in fns.items():
                        ResidualLinear.impl = name if name in FORMS else default
                        t = timed(fn, 1)[0]
                        if r >= 2:
                            times[name].append(t)
                ResidualLinear.impl = default
                med = {k: statistics.median(v) for k, v in times.items()}
                for name in fns:
                    rows.append({"part": part, "variant": name if name == "dense" else f"shared-{name}",
                                 "batch": B, "frames": T, "ms": round(med[name], 4),
                                 "speed_vs_dense": round(med["dense"] / med[name], 3),
                                 "repeats": reps})
                print(part, B, T, {k: round(v, 3) for k, v in med.items()}, flush=True)
    size = shared.size_report()
    doc = {"command": "python bench/shared_forward.py " + " ".join(sys.argv[1:]), "machine": mach,
           "inputs": {"model": "whisper-base encoder shapes (d 512, 8 heads, FFN 2048, 6 layers), "
                               "random weights", "groups": args.groups, "rank": args.rank,
                      "diag": True, "threads": 1, "stack_ratio": round(size["stack_ratio"], 3),
                      "linear": "fc1 of layer 0 (512 -> 2048)", "units": "ms per call, median"},
           "rows": rows}
    md = ["# Shared (ResidualTransformer) forward vs dense", "",
          f"`{doc['command']}`: whisper-base encoder shapes, K = {args.groups}, rank {args.rank}, "
          f"diagonal on (stack {size['stack_ratio']:.0%} of the dense parameters), 1 thread, "
          f"median ms; speed vs dense = dense time / time.", "",
          "| part | batch × frames | dense ms | " + " | ".join(f"shared {f} ms" for f in FORMS) + " | "
          + " | ".join(f"{f} speed vs dense" for f in FORMS) + " |",
          "|---|---|---|" + "---|" * (2 * len(FORMS))]
    for part, shapes in SHAPES.items():
        for B, T in shapes:
            r = {x["variant"]: x for x in rows if x["part"] == part and x["batch"] == B and x["frames"] == T}
            md.append(f"| {part} | {B} × {T} | {r['dense']['ms']:.3f} | "
                      + " | ".join(f"{r['shared-' + f]['ms']:.3f}" for f in FORMS) + " | "
                      + " | ".join(f"{r['shared-' + f]['speed_vs_dense']:.2f}" for f in FORMS) + " |")
    md.append(f"\nMachine: {mach['cpu']}, load {mach['load_avg_1m_at_start']} at start; {mach['note']}.\n")
    for p in benchlib.write_results("shared_forward", doc, "\n".join(md)):
        print("wrote", p)


if __name__ == "__main__":
    main()
