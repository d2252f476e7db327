"""Views: how one batch of hidden states becomes samples (n, S, D') for the metrics.

- ``pooled``: one sample per clip, the mean over its valid frames (HiddenStates.pooled).
  n = B, D' = D.
- ``frames``: every valid frame of every clip is a sample; padded frames never enter.
  n = lengths.sum(), D' = D.
- ``flat``: each clip's valid T x D block flattened to one vector. Every clip must have the
  same valid length T (within a batch and across batches). n = B, D' = T * D.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .config import VIEWS, SimilarityError

if TYPE_CHECKING:  # importing stackslim.models pulls in transformers (seconds); only types are needed
    from ..models.base import HiddenStates


def is_hidden_states(obj: object) -> bool:
    """Duck-typed HiddenStates check (a list of states and lengths), without importing models."""
    return hasattr(obj, "states") and hasattr(obj, "lengths")


def valid_mask(hs: HiddenStates) -> torch.Tensor:
    """(B, T) bool, True on valid frames (same as HiddenStates.mask)."""
    T = hs.states[0].shape[1]
    return torch.arange(T, device=hs.lengths.device)[None, :] < hs.lengths[:, None]


def check_hidden_states(hs: HiddenStates) -> None:
    """Raise SimilarityError unless hs holds S >= 1 states of one shape (B, T, D) and valid lengths."""
    if not is_hidden_states(hs):
        raise SimilarityError(f"expected a HiddenStates, got {type(hs).__name__}")
    if not hs.states:
        raise SimilarityError("HiddenStates has no states")
    shape = tuple(hs.states[0].shape)
    if len(shape) != 3:
        raise SimilarityError(f"hidden states must be (B, T, D), got shape {shape}")
    for i, s in enumerate(hs.states):
        if tuple(s.shape) != shape:
            raise SimilarityError(f"hidden state {i} has shape {tuple(s.shape)}, state 0 has {shape}")
    if tuple(hs.lengths.shape) != (shape[0],):
        raise SimilarityError(f"lengths must have shape ({shape[0]},), got {tuple(hs.lengths.shape)}")
    if bool((hs.lengths < 0).any()) or bool((hs.lengths > shape[1]).any()):
        raise SimilarityError(f"lengths must lie in 0..{shape[1]}, got {hs.lengths.tolist()}")


def samples(hs: HiddenStates, view: str, flat_len: int | None = None) -> torch.Tensor:
    """Samples of all S states of one batch in the given view.

    Args:
        hs: states 0..L, each (B, T, D), with lengths (B,).
        view: "pooled", "frames" or "flat".
        flat_len: for the flat view, the valid length every clip must have (None: take it
            from this batch).

    Returns:
        (n, S, D') tensor in the states' dtype and device (see module docstring for n, D').
    """
    check_hidden_states(hs)
    B, T, D = hs.states[0].shape
    if view == "pooled":
        if bool((hs.lengths == 0).any()):
            raise SimilarityError("a clip has 0 valid frames: its pooled vector is undefined")
        # half precision would lose digits in a sum over hundreds of frames: pool in >= float32
        dt = torch.promote_types(hs.states[0].dtype, torch.float32)
        m = valid_mask(hs)[:, :, None]  # (B, T, 1)
        inv = 1.0 / hs.lengths.to(dt)[:, None]  # (B, 1)
        # where, not multiply: padding may hold anything, even NaN, and must not leak in
        return torch.stack([torch.where(m, s.to(dt), 0).sum(1) * inv for s in hs.states], 1)  # (B, S, D)
    if view == "frames":
        mask = valid_mask(hs)  # (B, T)
        return torch.stack([s[mask] for s in hs.states], 1)  # (N, S, D)
    if view == "flat":
        lens = sorted(set(int(v) for v in hs.lengths.tolist()))
        want = flat_len if flat_len is not None else lens[0]
        if lens != [want] or want == 0:
            raise SimilarityError(
                f"the flat view needs every clip to have the same valid length (got lengths {lens}"
                f"{'' if flat_len is None else f', earlier batches had {flat_len}'}); crop or pad the "
                "audio to one length, or use view='pooled' or 'frames'")
        return torch.stack([s[:, :want].reshape(B, want * D) for s in hs.states], 1)  # (B, S, T*D)
    raise SimilarityError(f"unknown view {view!r}: choose one of {', '.join(VIEWS)}")
