"""The comparison of a mimic model with its teacher: parameters, bytes, CPU latency, accuracy.

Teacher = the whole encoder (front end + stack + final norm) + its head; its bytes are those of
the encoder alone saved as a Hugging Face folder (Whisper: the encoder without the decoder)
plus the head's safetensors. Mimic = `MimicModel` (front end it runs + mimic layers + head),
bytes of its saved folder. Latency (`models.latency.clip_latency`): audio → logits, per clip,
batch 1 and batched, median of repeats after warm-up; "stack" latency: hidden state 0's
features → the state the head reads (teacher: positions + every layer + final norm; mimic:
the mimic layers), on the same clips.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..heads import ClassifierHead
from ..models.base import Encoder, as_waves
from ..evaluate.latency import bytes_on_disk, clip_latency, count_params, measure_latency
from .model import MimicModel


def teacher_logits(enc: Encoder, head: ClassifierHead) -> Callable[[Sequence[np.ndarray]], torch.Tensor]:
    """audio → (B, C) logits through the whole teacher."""
    def run(waves: Sequence[np.ndarray]) -> torch.Tensor:
        h, n = enc.encode(waves)
        return head(h, n)
    return run


def teacher_bytes(enc: Encoder, head: ClassifierHead) -> int:
    """Bytes of the teacher saved as its encoder (HF folder, safetensors) + head (safetensors)."""
    from safetensors.torch import save_file

    with tempfile.TemporaryDirectory(prefix="stackslim-teacher-") as tmp:
        enc.encoder_module.save_pretrained(tmp, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in head.state_dict().items()}, str(Path(tmp) / "head.safetensors"))
        return bytes_on_disk(tmp)


def _stack_latency(fn: Callable, enc_like, waves: Sequence[np.ndarray], warmup: int,
                   repeats: int) -> dict:
    """Per-clip latency of `fn((h, n))` on precomputed features, batch 1 and batched."""
    with torch.inference_mode():
        h1, n1 = enc_like.features(as_waves(waves[:1]))
        hb, nb = enc_like.features(as_waves(list(waves)))
    one = measure_latency(fn, (h1, n1), warmup, repeats)
    many = measure_latency(fn, (hb, nb), warmup, repeats)
    return {"batch1_ms": one["median_ms"], "batched_ms": many["median_ms"] / len(waves),
            "batch_size": len(waves), "threads": one["threads"]}


def teacher_numbers(enc: Encoder, head: ClassifierHead, waves: Sequence[np.ndarray],
                    accuracy: float | None = None, warmup: int = 2, repeats: int = 7) -> dict:
    """Sizes, latency (and accuracy when given) of the teacher."""
    enc.model.eval()
    head.eval()
    stack = lambda hn: enc.stack_forward(enc.add_positions(*hn), hn[1], keep=False)  # noqa: E731
    return {
        "params": enc.num_params() + count_params(head),
        "params_stack": enc.num_params(stack_only=True),
        "params_head": count_params(head),
        "bytes": teacher_bytes(enc, head),
        "latency": clip_latency(teacher_logits(enc, head), waves, len(waves), warmup, repeats),
        "stack_latency": _stack_latency(stack, enc, waves, warmup, repeats),
        "accuracy": accuracy,
    }


def mimic_numbers(model: MimicModel, waves: Sequence[np.ndarray], model_dir: str | Path,
                  accuracy: float | None = None, warmup: int = 2, repeats: int = 7) -> dict:
    """Sizes, latency (and accuracy when given) of a mimic model saved at `model_dir`."""
    model.eval()
    return {
        "params": model.num_params(),
        "params_stack": model.num_params("stack"),
        "params_front_end": model.num_params("front_end"),
        "params_head": model.num_params("head"),
        "bytes": bytes_on_disk(model_dir),
        "latency": clip_latency(model, waves, len(waves), warmup, repeats),
        "stack_latency": _stack_latency(lambda hn: model.mimic_states(*hn), model, waves,
                                        warmup, repeats),
        "accuracy": accuracy,
    }


def ratios(teacher: dict, mimic: dict) -> dict:
    """Teacher / mimic for sizes and latencies (how many times smaller or faster)."""
    r = {"params": teacher["params"] / mimic["params"],
         "params_stack": teacher["params_stack"] / mimic["params_stack"],
         "bytes": teacher["bytes"] / mimic["bytes"]}
    for what in ("latency", "stack_latency"):
        for b in ("batch1_ms", "batched_ms"):
            r[f"{what}_{b[:-3]}"] = teacher[what][b] / mimic[what][b]
    return r


def comparison_table(teacher: dict, mimic: dict, capacity: float | None) -> str:
    """The teacher/mimic comparison as aligned text (what the CLI prints)."""
    r = ratios(teacher, mimic)
    bs = teacher["latency"]["batch_size"]
    rows = [
        ("parameters (whole model)", f"{teacher['params']:,}", f"{mimic['params']:,}", f"{r['params']:.1f}x smaller"),
        ("parameters (stack)", f"{teacher['params_stack']:,}", f"{mimic['params_stack']:,}", f"{r['params_stack']:.1f}x smaller"),
        ("bytes on disk", f"{teacher['bytes']:,}", f"{mimic['bytes']:,}", f"{r['bytes']:.1f}x smaller"),
        ("CPU ms/clip, batch 1", f"{teacher['latency']['batch1_ms']:.2f}", f"{mimic['latency']['batch1_ms']:.2f}", f"{r['latency_batch1']:.1f}x faster"),
        (f"CPU ms/clip, batch {bs}", f"{teacher['latency']['batched_ms']:.2f}", f"{mimic['latency']['batched_ms']:.2f}", f"{r['latency_batched']:.1f}x faster"),
        ("stack ms/clip, batch 1", f"{teacher['stack_latency']['batch1_ms']:.2f}", f"{mimic['stack_latency']['batch1_ms']:.2f}", f"{r['stack_latency_batch1']:.1f}x faster"),
    ]
    if teacher.get("accuracy") is not None and mimic.get("accuracy") is not None:
        rows.append(("accuracy (test)", f"{teacher['accuracy']:.4f}", f"{mimic['accuracy']:.4f}",
                     f"capacity {capacity:.1%}" if capacity is not None else ""))
    w = [max(len(row[i]) for row in rows + [("", "teacher", "mimic", "")]) for i in range(4)]
    lines = [f"{'':<{w[0]}}  {'teacher':>{w[1]}}  {'mimic':>{w[2]}}  "]
    lines += [f"{a:<{w[0]}}  {b:>{w[1]}}  {c:>{w[2]}}  {d}" for a, b, c, d in rows]
    return "\n".join(lines)
