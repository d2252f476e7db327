"""The candidates of a run, the best deletion order, and the budget checks made before any
training (one-line errors that name the smallest budget that could be met)."""
from __future__ import annotations

import torch

from ..models.base import Encoder
from ..models.cache import StateCache
from .config import FitConfig, FitError
from .latency import LatencyModel
from .predict import Account, Candidate

MB = 1e6


def bi_order(cache: StateCache) -> list[int]:
    """Layers (0-based) in deletion order by Block Influence, BI(i) = 1 − cos(h_{i−1}, h_i)
    averaged over valid frames (ShortGPT, the paper's heuristic): the layer that changes its
    input least goes first; layer 0 is never deleted. `cache` holds states 0..L."""
    L = max(k for k in cache.states if k >= 0)
    bi = {}
    for i in range(2, L + 1):
        a, b = torch.cat(cache.states[i - 1]), torch.cat(cache.states[i])  # (frames, D)
        bi[i - 1] = float(1 - torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())
    return sorted(bi, key=lambda i: (bi[i], i))


def compositions(enc: Encoder, order: list[int], cfg: FitConfig) -> list[Candidate]:
    """Every float composition: prune d = 0..L−1 layers by `order`; share the kept stack (at
    least 2 layers) at each size; a mimic layer at each width."""
    L, out = enc.num_layers, []
    for d in range(L):
        out.append(Candidate("prune", tuple(sorted(order[:d]))))
    for d in range(L - 1):
        for s in cfg.sizes:
            out.append(Candidate("share", tuple(sorted(order[:d])), size=s))
    for z in widths(enc, cfg):
        out.append(Candidate("mimic", width=z))
    return out


def widths(enc: Encoder, cfg: FitConfig) -> list[int]:
    """The mimic widths z of `cfg.widths` (fractions of the hidden size); none for --task asr
    (`pipeline_asr`: its mimic candidates are skipped)."""
    if cfg.task == "asr":
        return []
    return sorted({max(1, round(w * enc.hidden_size)) for w in cfg.widths})


def variants(c: Candidate, cfg: FitConfig) -> list[Candidate]:
    """`c` in float32, and in int8 unless --no-int8."""
    out = [c]
    if cfg.int8:
        out.append(Candidate(c.method, c.deleted, c.size, c.width, True))
    return out


def check_bytes(cfg: FitConfig, account: Account, predicted: dict[Candidate, int | None]) -> None:
    """FitError when no candidate fits --max-mb (before any training)."""
    sizes = {c: b for c, b in predicted.items() if b is not None}
    smallest = min(sizes, key=sizes.get)
    if cfg.max_mb * MB < sizes[smallest]:
        raise FitError(f"--max-mb {cfg.max_mb:g} is below the smallest model fit can build from "
                       f"this encoder: {sizes[smallest] / MB:.4f} MB ({smallest.name}; its front end "
                       f"alone is {account.front_bytes() / MB:.4f} MB)")


def check_latency(cfg: FitConfig, lat: LatencyModel, predicted: dict[Candidate, float]) -> None:
    """FitError when no candidate's predicted latency meets --max-ms (0: no budget)."""
    if not cfg.max_ms:
        return
    smallest = min(predicted, key=predicted.get)
    if cfg.max_ms < predicted[smallest]:
        raise FitError(f"--max-ms {cfg.max_ms:g} is below the fastest model fit can build from "
                       f"this encoder on this machine: {predicted[smallest]:.2f} ms per 1 s clip "
                       f"({smallest.name}; its front end alone takes {lat.front_ms:.2f} ms)")
