"""Parity of an exported model with its PyTorch source, measured at export time.

The reference is stackslim's own forward (`Encoder.hidden_states`, `MimicModel`), never the
traced module, so a graph that computes something else than the library is caught:

    clips = parity_clips(3)                        # noise clips of different lengths
    ref = reference(model, clips)                  # {"last_hidden_state", "lengths", "logits"?}
    compare(ref, run_onnx(path, *graph_inputs(enc, clips)))
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

SECONDS = (1.0, 0.55, 0.8, 0.35, 1.2, 0.65)


def parity_clips(n: int = 3, seed: int = 0) -> list[np.ndarray]:
    """n noise-like 16 kHz clips of different lengths (0.35 to 1.2 s), so the batch is padded."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = int(16000 * SECONDS[i % len(SECONDS)]) + 160 * (i // len(SECONDS))
        t = np.arange(s) / 16000
        x = 0.3 * np.sin(2 * np.pi * (200 + 150 * i) * t) + 0.05 * rng.standard_normal(s)
        out.append(x.astype(np.float32))
    return out


@torch.no_grad()
def reference(model, head, clips: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """stackslim's PyTorch outputs: last state (B, T, D), lengths (B,), logits (B, C) if a head."""
    hs = model.hidden_states(clips)
    out = {"last_hidden_state": hs.states[-1].float().numpy(), "lengths": hs.lengths.numpy()}
    if head is not None:
        with torch.inference_mode():
            out["logits"] = head(hs.states[-1], hs.lengths).float().numpy()
    return out


def valid_frames(h: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(N, D) the valid frames of (B, T, D) states."""
    return np.concatenate([h[b, : int(n)] for b, n in enumerate(lengths)])


def compare(ref: dict[str, np.ndarray], got: Sequence[np.ndarray]) -> dict:
    """Max abs and relative difference on valid frames (and logits), lengths equal or not;
    ``ref_max_abs`` is the largest reference value (the scale float32 rounding grows with)."""
    lengths_equal = bool(np.array_equal(np.asarray(got[1]), ref["lengths"]))
    if not lengths_equal:
        return {"max_abs_diff": None, "rel_error": None, "lengths_equal": False}
    a = valid_frames(ref["last_hidden_state"], ref["lengths"])
    b = valid_frames(np.asarray(got[0]), ref["lengths"])
    out = {"max_abs_diff": float(np.abs(a - b).max()), "ref_max_abs": float(np.abs(a).max()),
           "rel_error": float(np.linalg.norm(a - b) / max(np.linalg.norm(a), 1e-30)),
           "lengths_equal": lengths_equal, "valid_frames": int(a.shape[0])}
    if "logits" in ref:
        out["logits_max_abs_diff"] = float(np.abs(ref["logits"] - np.asarray(got[2])).max())
        out["same_argmax"] = float(np.mean(ref["logits"].argmax(-1) == np.asarray(got[2]).argmax(-1)))
    return out


def shared_copies(params: Sequence[torch.Tensor], onnx_path) -> list[int]:
    """For each tensor in `params` (a shared model's W_shared), how many initializers of the
    ONNX file hold exactly its values: 1 each when every shared tensor is stored once."""
    import onnx
    from onnx import numpy_helper

    inits = [numpy_helper.to_array(i) for i in onnx.load(str(onnx_path)).graph.initializer]
    counts = []
    for p in params:
        w = p.detach().cpu().numpy()
        counts.append(sum(1 for a in inits if (a.shape == w.shape and np.array_equal(a, w))
                          or (a.shape == w.T.shape and np.array_equal(a, w.T))))
    return counts


def bound(parity: dict, tolerance: float) -> float:
    """The largest absolute difference accepted: `tolerance` for outputs of magnitude up to 1,
    `tolerance` × the largest output beyond (float32 rounding grows with the values: whisper-base's
    last state reaches about 24, and onnxruntime's products round differently from PyTorch's)."""
    return tolerance * max(1.0, parity.get("ref_max_abs", 1.0))
