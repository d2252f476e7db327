"""Size and speed accounts: the paper's formula, bytes on disk, CPU latency.

The paper's size column (Wang & Li 2024, Table 1) counts the Transformer layers of the encoder.
One dense layer with model width d and feed-forward width f holds

    4 (d² + d)          Q, K, V, attention output (weights and biases)
    d f + f + f d + d   feed-forward in and out
    2 · 2d              two LayerNorms (scale and shift)

Shared (groups of K adjacent layers, G = ⌈L/K⌉ groups, rank r):

    G · (4 d² + 2 d f)                        one W_shared per map and group
    L · r · (4 · 2d + 2 (d + f))              A_l (d_out × r), B_l (r × d_in) per map and layer
    L · (4 d + 2 min(d, f))                   d_l per map and layer (when diag is on)
    G or L · (4d + f + d + 4d)                biases and norms: per group (share_norms) or layer

For L = 18, d = 512, f = 2048 (56.7M parameters), biases and norms shared: K=3 r=2 → 34.0%,
K=3 r=16 → 38.1%, K=6 r=16 → 21.4%, K=9 r=16 → 15.9% of the dense layers.
"""
from __future__ import annotations

import json
import struct
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..evaluate.latency import bytes_on_disk
from ..models.base import Encoder
from .io import DECODER, module_prefix  # module_prefix: re-exported


def paper_layer_params(d: int, ffn: int) -> int:
    """Parameters of one dense Transformer layer (six linear maps with biases, two LayerNorms)."""
    return 4 * (d * d + d) + (d * ffn + ffn) + (ffn * d + d) + 4 * d


def paper_stack_params(num_layers: int, d: int, ffn: int, k: int, r: int, diag: bool = True,
                       share_norms: bool = True) -> dict[str, int | float]:
    """Dense and shared parameter counts of an L-layer stack (formula: module docstring).

    Returns:
        dense, shared (parameters), ratio (shared / dense) and the shared count by kind.
    """
    groups = -(-num_layers // k)
    per_bias_norm = 4 * d + ffn + d + 4 * d
    kinds = {
        "shared_weights": groups * (4 * d * d + 2 * d * ffn),
        "low_rank": num_layers * r * (4 * 2 * d + 2 * (d + ffn)),
        "diag": num_layers * (4 * d + 2 * min(d, ffn)) if diag else 0,
        "bias_norm": (groups if share_norms else num_layers) * per_bias_norm,
    }
    dense = num_layers * paper_layer_params(d, ffn)
    shared = sum(kinds.values())
    return {"dense": dense, "shared": shared, "ratio": shared / dense, **kinds}


def paper_size_ratio(num_layers: int, d: int, ffn: int, k: int, r: int, diag: bool = True,
                     share_norms: bool = True) -> float:
    """Shared size as a percentage of the dense stack (the paper's size column)."""
    return 100.0 * paper_stack_params(num_layers, d, ffn, k, r, diag, share_norms)["ratio"]


def safetensors_bytes(file: str | Path, prefix: str = "") -> int:
    """Bytes of the tensors stored in a safetensors file whose names start with `prefix`."""
    with open(file, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return int(sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items()
                   if k != "__metadata__" and k.startswith(prefix)))


def disk_report(shared, dense: Encoder | None = None) -> dict[str, int | float]:
    """Bytes on disk of the compact format and of the dense model (saved to a temp folder).

    Returns folder bytes (everything saved, e.g. Whisper's decoder too) and encoder bytes
    (the stored tensors of the encoder only), for both, and their ratio; and the bytes of the
    compact folder's decoder file (0 when the model has none), counted apart from the encoder.
    """
    dense = dense if dense is not None else shared.materialize()
    with tempfile.TemporaryDirectory(prefix="stackslim-share-") as tmp:
        shared.save(Path(tmp) / "shared")
        dense.save(Path(tmp) / "dense")
        prefix_s = module_prefix(shared.model, shared.encoder_module)
        prefix_d = module_prefix(dense.model, dense.encoder_module)
        out = {
            "compact_folder_bytes": bytes_on_disk(Path(tmp) / "shared"),
            "dense_folder_bytes": bytes_on_disk(Path(tmp) / "dense"),
            "compact_encoder_bytes": safetensors_bytes(Path(tmp) / "shared" / "model.safetensors", prefix_s),
            "dense_encoder_bytes": safetensors_bytes(Path(tmp) / "dense" / "model.safetensors", prefix_d),
            "compact_decoder_bytes": (safetensors_bytes(Path(tmp) / "shared" / DECODER)
                                      if (Path(tmp) / "shared" / DECODER).is_file() else 0),
        }
    out["encoder_bytes_ratio"] = out["compact_encoder_bytes"] / out["dense_encoder_bytes"]
    return out


def latency_report(encoders: dict[str, Encoder], waves: Sequence[np.ndarray], batch_size: int = 8,
                   repeats: int = 5) -> dict[str, dict]:
    """CPU latency of `hidden_states` per clip for each named encoder, interleaved.

    Each round times every encoder once at batch 1 (`waves[0]`) and once batched
    (`waves[:batch_size]`, time divided by its clips), so that load changes on a shared
    machine hit all encoders alike. After one untimed warm-up round, `repeats` rounds;
    median and min over rounds, in milliseconds per clip.
    """
    waves = list(waves)
    if not waves:
        raise ValueError("latency_report needs at least one clip")
    one, many = [waves[0]], waves[:batch_size]
    times: dict[str, dict[str, list[float]]] = {n: {"batch1": [], "batched": []} for n in encoders}
    with torch.inference_mode():
        for rnd in range(repeats + 1):
            for name, enc in encoders.items():
                for key, batch in (("batch1", one), ("batched", many)):
                    t0 = time.perf_counter()
                    enc.hidden_states(batch)
                    if rnd:
                        times[name][key].append((time.perf_counter() - t0) * 1e3 / len(batch))
    return {name: {"batch1_ms": float(np.median(t["batch1"])), "batch1_min_ms": float(np.min(t["batch1"])),
                   "batched_ms": float(np.median(t["batched"])), "batched_min_ms": float(np.min(t["batched"])),
                   "batch_size": len(many), "repeats": repeats, "threads": torch.get_num_threads()}
            for name, t in times.items()}
