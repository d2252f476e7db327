"""Whisper encoder states on unpadded audio vs Whisper's own 30 s padded input.

Whisper's Hugging Face encoder only takes 3000 mel frames (30 s, zero padded). Running it on the
clip alone (conv -> embed_positions[:T] -> layers -> final norm) is much faster on short clips;
this measures how close its states are to the first T frames of the padded run: the cosine
similarity per frame, over flite speech cut to 1 s and 3 s, for the bundled models.

Command (about a minute on 2 cores)::

    .venv/bin/python bench/whisper_unpadded.py

Writes bench/results/whisper_unpadded.json and bench/results/whisper_unpadded.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from math import gcd
from pathlib import Path

import numpy as np
import torch

import benchlib  # (bench/benchlib.py)
from stackslim.models.transcribe import encode_audio, load_whisper
from stackslim.results import provenance, write_atomic, write_json

SENTENCES = [  # long enough (> 3 s) for the 3 s cut with every voice
    "The quick brown fox jumps over the lazy dog near the river bank.",
    "Please call me back when you get home from work this evening.",
    "We are going to the market tomorrow morning to buy fresh bread.",
    "She reads a long book every night before she goes to bed.",
]
VOICES = ["rms", "slt", "awb", "rms"]
OUT = Path(__file__).resolve().parent / "results"


def flite_clips() -> list[np.ndarray]:
    """One 16 kHz clip per sentence, voices rms, slt, awb, rms."""
    import soundfile as sf
    from scipy.signal import resample_poly

    clips = []
    with tempfile.TemporaryDirectory() as d:
        for i, (text, voice) in enumerate(zip(SENTENCES, VOICES)):
            f = f"{d}/{i}.wav"
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", f], check=True)
            w, sr = sf.read(f, dtype="float32")
            g = gcd(sr, 16000)
            clips.append(resample_poly(w, 16000 // g, sr // g).astype(np.float32))
    return clips


def frame_cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(T,) cosine between matching frames of a and b, both (T, D)."""
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def best_ms(fn, repeats: int = 3) -> float:
    """Best wall time of `repeats` calls after one warm-up call, in ms (noisy shared CPUs)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * min(times)


def measure(name: str, clips: list[np.ndarray], seconds: float) -> dict:
    model, _ = load_whisper(name)
    n = int(seconds * 16000)
    cut = [np.pad(c[:n], (0, max(0, n - len(c)))) for c in clips]  # (n,) each
    padded, lengths = encode_audio(model, cut)  # (B, 1500, D)
    alone, lengths_u = encode_audio(model, cut, pad_to_30s=False)  # (B, T, D)
    assert torch.equal(lengths, lengths_u)
    cos = [frame_cosines(alone[i, :T], padded[i, :T]) for i, T in enumerate(lengths.tolist())]
    allc = torch.cat(cos)
    pooled = [float(frame_cosines(alone[i, :T].mean(0, keepdim=True),
                                  padded[i, :T].mean(0, keepdim=True)))
              for i, T in enumerate(lengths.tolist())]
    t_pad = best_ms(lambda: encode_audio(model, cut[:1]))
    t_alone = best_ms(lambda: encode_audio(model, cut[:1], pad_to_30s=False))
    return {
        "model": name, "clip_s": seconds, "clips": len(cut), "frames_per_clip": int(lengths[0]),
        "cos_mean": round(float(allc.mean()), 4), "cos_min": round(float(allc.min()), 4),
        "cos_min_clip_mean": round(min(float(c.mean()) for c in cos), 4),
        "cos_mean_without_last_frame": round(float(torch.cat([c[:-1] for c in cos]).mean()), 4),
        "cos_pooled_mean": round(float(np.mean(pooled)), 4),
        "cos_pooled_min": round(float(np.min(pooled)), 4),
        "padded_ms": round(t_pad, 1), "unpadded_ms": round(t_alone, 1),
        "speedup": round(t_pad / t_alone, 1),
    }


def to_markdown(result: dict) -> str:
    rows = result["rows"]
    cols = list(rows[0])
    lines = ["# Whisper encoder: unpadded vs 30 s padded states", "",
             f"`{result['command']}`", "",
             "Cosine per frame between states of the clip alone and the first T frames of the "
             "padded run (after the final norm), over all valid frames; `cos_pooled`: cosine "
             "of the clip-mean vectors. Times: best of 3 wall-clock encodes of one clip "
             f"(log-mel included), {result['machine']['torch_threads']} threads, load average "
             f"{result['machine']['load_avg_1min']} on {result['machine']['cpus']} CPUs while "
             "measuring (shared machine: trust the cosines, not the times).",
             "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["whisper-tiny.en", "whisper-base"])
    ap.add_argument("--seconds", nargs="+", type=float, default=[1.0, 3.0])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    benchlib.set_threads(args.threads)
    clips = flite_clips()
    rows = []
    with torch.inference_mode():
        for name in args.models:
            for s in args.seconds:
                rows.append(measure(name, clips, s))
                print(rows[-1], flush=True)
    result = {
        "command": " ".join(["python bench/whisper_unpadded.py", *(argv or sys.argv[1:])]),
        # timings on a shared machine: the load average says how far to trust them
        "machine": {**provenance(), "load_avg_1min": round(os.getloadavg()[0], 2)},
        "inputs": {"audio": "flite voices rms, slt, awb, rms; one sentence each, cut or "
                            "zero-padded to clip_s", "sentences": SENTENCES,
                   "models": args.models, "seconds": args.seconds},
        "rows": rows,
    }
    write_json(OUT / "whisper_unpadded.json", result)
    write_atomic(OUT / "whisper_unpadded.md", to_markdown(result))
    print(f"wrote {OUT / 'whisper_unpadded.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
