"""Block structure of a layer-similarity matrix, and Block Influence.

`find_blocks` splits hidden states 1..L (state 0, the stack's input, is left out) into
contiguous blocks of mutually similar states:

1. For every number of blocks m = 1..M, the optimal segmentation is found exactly by dynamic
   programming, minimising the within-block sum of squared deviations
       W = sum_blocks sum_{p<q in block} (S_pq - mean_block)^2,
   i.e. each block is fitted by one constant similarity (O(M L^2) given the block costs).
2. The number of blocks is chosen by BIC of the full block-constant model of the upper
   triangle (N = L(L-1)/2 entries): every (block, block) pair gets its own mean, so
       RSS_m = sum_{p<q} (S_pq - mean_{block(p), block(q)})^2,
       BIC_m = N ln(max(RSS_m / N, noise_floor^2)) + P_m ln N,
   with P_m the number of (block, block) groups that hold entries. The smallest BIC wins;
   saturated models (P_m >= N, e.g. every state its own block) are excluded;
   `noise_floor` keeps a perfectly block-constant matrix from giving ln 0 (similarities are
   not known more precisely than that).
3. Each boundary gets a contrast score: mean similarity inside the two blocks it separates
   minus the mean similarity between them; the drop in within/between contrast if the
   boundary were removed. Large = a clear boundary; near 0 = a weak one.

Block Influence (ShortGPT; Dorszewski et al. 2025): BI(i) = 1 - sim(h_{i-1}, h_i), i = 1..L.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

from .config import SimilarityError
from .metrics import cosine, mutual_knn
from .views import is_hidden_states, samples

if TYPE_CHECKING:  # importing stackslim.models pulls in transformers (seconds); only types are needed
    from ..models.base import HiddenStates


@dataclass
class Blocks:
    """Contiguous blocks of hidden states 1..L.

    Attributes:
        blocks: lists of 1-based hidden-state indices, in order, covering 1..L.
        boundary_scores: one per boundary (len(blocks) - 1): within minus between mean
            similarity of the two neighbouring blocks.
        bic: BIC of the best segmentation into m = 1..M blocks (bic[m-1]).
        method: one-line statement of how the blocks were chosen.
    """

    blocks: list[list[int]]
    boundary_scores: list[float]
    bic: list[float] = field(default_factory=list)
    method: str = ""

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def boundaries(self) -> list[int]:
        """Last hidden state of every block but the final one."""
        return [b[-1] for b in self.blocks[:-1]]

    def to_json(self) -> dict[str, Any]:
        return {"blocks": self.blocks, "boundaries": self.boundaries,
                "boundary_scores": [float(s) for s in self.boundary_scores],
                "bic": [float(b) if np.isfinite(b) else None for b in self.bic], "method": self.method}


def _check_matrix(S: np.ndarray | torch.Tensor) -> np.ndarray:
    A = np.asarray(S.detach().cpu() if isinstance(S, torch.Tensor) else S, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 2:
        raise SimilarityError(f"expected an (L+1, L+1) similarity matrix with L >= 1, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise SimilarityError("similarity matrix contains NaN or inf")
    return 0.5 * (A + A.T)


def _within_costs(A: np.ndarray) -> np.ndarray:
    """(L, L) cost[a, b] = SSE of the upper-triangle entries of block a..b around their mean."""
    L = A.shape[0]
    cost = np.zeros((L, L))
    for a in range(L):
        for b in range(a + 1, L):
            v = A[a:b + 1, a:b + 1][np.triu_indices(b - a + 1, 1)]
            cost[a, b] = float(((v - v.mean()) ** 2).sum())
    return cost


def _segmentations(cost: np.ndarray, M: int) -> dict[int, list[tuple[int, int]]]:
    """Exact optimal split of 0..L-1 into m contiguous blocks for every m <= M (one DP table)."""
    L = cost.shape[0]
    best = np.full((M + 1, L + 1), np.inf)  # best[j, e]: first e states in j blocks
    arg = np.zeros((M + 1, L + 1), dtype=int)
    best[0, 0] = 0.0
    for j in range(1, M + 1):
        for e in range(j, L + 1):
            s = np.arange(j - 1, e)  # last block is s..e-1
            c = best[j - 1, s] + cost[s, e - 1]
            arg[j, e] = s[int(np.argmin(c))]
            best[j, e] = c.min()
    out = {}
    for m in range(1, M + 1):
        segs, e = [], L
        for j in range(m, 0, -1):
            s0 = int(arg[j, e])
            segs.append((s0, e - 1))
            e = s0
        out[m] = segs[::-1]
    return out


def _block_model_rss(A: np.ndarray, segs: list[tuple[int, int]]) -> tuple[float, int]:
    """RSS and parameter count of the block-constant model of the upper triangle."""
    label = np.concatenate([[i] * (b - a + 1) for i, (a, b) in enumerate(segs)])
    p, q = np.triu_indices(A.shape[0], 1)
    vals, gp, gq = A[p, q], label[p], label[q]
    rss, groups = 0.0, 0
    for u in range(len(segs)):
        for v in range(u, len(segs)):
            sel = (gp == u) & (gq == v)
            if sel.any():
                groups += 1
                rss += float(((vals[sel] - vals[sel].mean()) ** 2).sum())
    return rss, groups


def _contrast(A: np.ndarray, s1: tuple[int, int], s2: tuple[int, int]) -> float:
    within = [A[a:b + 1, a:b + 1][np.triu_indices(b - a + 1, 1)] for a, b in (s1, s2)]
    w = np.concatenate(within)
    w_mean = float(w.mean()) if w.size else 1.0  # two single states: only self-similarity (1)
    between = A[s1[0]:s1[1] + 1, s2[0]:s2[1] + 1]
    return w_mean - float(between.mean())


def find_blocks(S: np.ndarray | torch.Tensor, num_blocks: int | None = None,
                max_blocks: int | None = None, noise_floor: float = 0.01) -> Blocks:
    """Contiguous blocks of mutually similar hidden states 1..L (method: module docstring).

    Args:
        S: (L+1, L+1) similarity matrix over hidden states 0..L (state 0 is not segmented).
        num_blocks: fix the number of blocks instead of choosing it by BIC.
        max_blocks: largest number of blocks considered (default L).
        noise_floor: smallest residual standard deviation credited to a model.

    Returns:
        Blocks with 1-based state indices, boundary contrast scores and the BIC curve.
    """
    A = _check_matrix(S)[1:, 1:]  # (L, L) states 1..L
    L = A.shape[0]
    M = min(L, max_blocks or L)
    if num_blocks is not None and not 1 <= num_blocks <= L:
        raise SimilarityError(f"num_blocks must lie in 1..{L}, got {num_blocks}")
    cost = _within_costs(A)
    N = L * (L - 1) // 2
    candidates = [num_blocks] if num_blocks else list(range(1, M + 1))
    segs_by_m, bic = _segmentations(cost, max(candidates)), []
    for m in candidates:
        if N:
            rss, P = _block_model_rss(A, segs_by_m[m])
            # a model with as many parameters as entries fits anything (RSS = 0): it has no
            # residual to judge it by, so it is never chosen (else L singletons always win)
            bic.append(N * np.log(max(rss / N, noise_floor ** 2)) + P * np.log(N) if P < N or m == 1
                       else float("inf"))
    if num_blocks:
        m_best, how = num_blocks, f"fixed num_blocks={num_blocks}"
    elif N == 0:
        m_best, how = 1, "one state"
    else:
        m_best, how = candidates[int(np.argmin(bic))], "BIC of the block-constant model"
    segs = segs_by_m[m_best]
    scores = [_contrast(A, segs[i], segs[i + 1]) for i in range(len(segs) - 1)]
    return Blocks(blocks=[list(range(a + 1, b + 2)) for a, b in segs], boundary_scores=scores, bic=bic,
                  method=f"exact DP segmentation (within-block SSE) of states 1..{L}; number of blocks: {how}")


def block_influence_from_matrix(S: np.ndarray | torch.Tensor) -> np.ndarray:
    """(L,) BI(i) = 1 - S[i-1, i] for i = 1..L (cosine matrix: ShortGPT BI; mknn: kNN variant)."""
    A = _check_matrix(S)
    return np.array([1.0 - A[i - 1, i] for i in range(1, A.shape[0])])


def block_influence(hidden_states: HiddenStates | Sequence[HiddenStates], metric: str = "cosine",
                    view: str = "frames", k: int = 8) -> np.ndarray:
    """(L,) Block Influence computed directly on hidden states.

    BI(i) = 1 - cosine(h_{i-1}, h_i) (mean over samples), or 1 - mutual_knn(h_{i-1}, h_i).

    Args:
        hidden_states: one HiddenStates or a sequence of them (samples are concatenated).
        metric: "cosine" or "mknn". view: "pooled", "frames" or "flat". k: kNN neighbours.
    """
    batches = [hidden_states] if is_hidden_states(hidden_states) else list(hidden_states)
    if not batches:
        raise SimilarityError("no hidden states given")
    flat_len, parts = None, []
    for hs in batches:
        z = samples(hs, view, flat_len)  # (n, S, D')
        if view == "flat":
            flat_len = z.shape[2] // hs.states[0].shape[2]
        parts.append(z.to(torch.float64))
    z = torch.cat(parts)
    if metric == "cosine":
        fn = cosine
    elif metric == "mknn":
        def fn(a, b):
            return mutual_knn(a, b, k=k)
    else:
        raise SimilarityError(f"block influence uses metric 'cosine' or 'mknn', got {metric!r}")
    return np.array([1.0 - fn(z[:, i - 1], z[:, i]) for i in range(1, z.shape[1])])
