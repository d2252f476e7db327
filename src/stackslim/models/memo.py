"""Remember an encoder's hidden states clip by clip for the length of one job.

The study runs several steps on the same frozen teacher and the same clips (a mimic variant,
then another, then each shared variant's distillation targets): without a memo each step runs
the teacher over every clip again. Inside ``with remember_states(enc):`` the first
`Encoder.hidden_states` call on a clip computes it; later calls on the same audio return the
kept states instead::

    with remember_states(teacher):
        a = teacher.hidden_states(waves)   # computed, kept per clip
        b = teacher.hidden_states(waves)   # the same states, no forward pass

`features_and_states(enc, waves)` (the front end's output before positions, and states 0..L:
what mimic trains on) is served from the same memo.

Clips are recognised by a hash of their samples, so any batching or order finds them. A memo
is tied to the encoder object (a copy, e.g. `without_layers`, has none) and forgets everything
when a parameter of the encoder changes in place (an optimizer step, `load_state_dict`): the
sum of the parameters' version counters is checked on every call.

A batch served from the memo is rebuilt zero-padded; its valid frames are the ones computed
before, which equal a fresh computation to float rounding (batches pad differently; the
adapters' tests check valid frames do not depend on padding to 2e-5). Padded frames are zeros.

Memory: every state of every clip, float32 (whisper-base, 1 s clips: 7 × 50 × 512 × 4 B
= 0.7 MB per clip; 1,500 clips ≈ 1.1 GB).
"""
from __future__ import annotations

import hashlib
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .base import MEMOS, Encoder, HiddenStates, as_waves
from .cache import pad_frames

_MEMOS = MEMOS  # one registry, kept in base so that Encoder.hidden_states reads it


def clip_key(wave: np.ndarray | torch.Tensor) -> bytes:
    """128-bit hash of a clip's float32 samples."""
    a = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    return hashlib.blake2b(np.ascontiguousarray(a, dtype=np.float32).tobytes(), digest_size=16).digest()


@dataclass
class _Entry:
    states: list[torch.Tensor]  # L + 1 tensors (T_i, D): the clip's valid frames only
    final_norm: bool | None
    features: torch.Tensor | None = None  # (T_i, D) front end before positions, when asked for


class StateMemo:
    """Per-clip hidden states of one encoder (see the module docstring).

    Attributes:
        hits, misses: clips served from the memo / computed.
    """

    def __init__(self, enc: Encoder):
        self.enc = weakref.ref(enc)
        self.entries: dict[tuple[bytes, bool], _Entry] = {}
        self.version = self._param_version(enc)
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _param_version(enc: Encoder) -> int:
        return sum(p._version for p in enc.model.parameters())

    def _lookup(self, waves: Sequence, final_norm: bool,
                features: bool) -> tuple[list[tuple[bytes, bool]], list[_Entry] | None]:
        """The batch's keys, and its entries when every clip is known (None otherwise)."""
        enc = self.enc()
        assert enc is not None
        version = self._param_version(enc)
        if version != self.version:  # the weights moved: what we kept is stale
            self.entries.clear()
            self.version = version
        keys = [(clip_key(w), bool(final_norm)) for w in waves]
        found = [self.entries.get(k) for k in keys]
        if keys and all(e is not None and (e.features is not None or not features) for e in found):
            self.hits += len(keys)
            return keys, found  # type: ignore[return-value]
        self.misses += len(keys)
        return keys, None

    def _keep(self, keys: list[tuple[bytes, bool]], hs: HiddenStates, h: torch.Tensor | None) -> None:
        n = hs.lengths.tolist()
        for b, k in enumerate(keys):
            self.entries[k] = _Entry([s[b, : n[b]].clone() for s in hs.states], hs.final_norm,
                                     None if h is None else h[b, : n[b]].clone())

    def hidden_states(self, waves: Sequence[np.ndarray | torch.Tensor], final_norm: bool,
                      compute: Callable[[Sequence, bool], HiddenStates]) -> HiddenStates:
        """The batch's states: from the memo when every clip is known, else `compute(waves,
        final_norm)` on the whole batch (its states are kept)."""
        keys, found = self._lookup(waves, final_norm, features=False)
        if found is not None:
            return _stack_entries(found)
        enc = self.enc()
        if hasattr(enc, "features") and hasattr(enc, "add_positions"):
            # front_end = add_positions ∘ features: keeping the features costs one more state
            # and saves a later `features_and_states` its forward pass
            h, hs = _compute_features_and_states(enc, waves, final_norm)
        else:
            h, hs = None, compute(waves, final_norm)
        self._keep(keys, hs, h)
        return hs

    def features_and_states(self, waves: Sequence[np.ndarray | torch.Tensor],
                            final_norm: bool) -> tuple[torch.Tensor, HiddenStates]:
        """`features_and_states` for a batch, from the memo when every clip is known."""
        keys, found = self._lookup(waves, final_norm, features=True)
        if found is not None:
            return pad_frames([e.features for e in found]), _stack_entries(found)  # type: ignore[misc]
        enc = self.enc()
        assert enc is not None
        h, hs = _compute_features_and_states(enc, waves, final_norm)
        self._keep(keys, hs, h)
        return h, hs


def _stack_entries(entries: list[_Entry]) -> HiddenStates:
    """Zero-padded (B, T, D) states from per-clip entries."""
    lengths = torch.tensor([e.states[0].shape[0] for e in entries])
    states = [pad_frames([e.states[j] for e in entries]) for j in range(len(entries[0].states))]
    return HiddenStates(states=states, lengths=lengths, final_norm=entries[0].final_norm)


@torch.inference_mode()
def _compute_features_and_states(enc: Encoder, waves: Sequence,
                                 final_norm: bool) -> tuple[torch.Tensor, HiddenStates]:
    enc.model.eval()
    h, n = enc.features(as_waves(waves))  # (B, T, D) before positions
    return h, enc.stack_forward(enc.add_positions(h, n), n, final_norm=final_norm)


def features_and_states(enc: Encoder, waves: Sequence[np.ndarray | torch.Tensor],
                        final_norm: bool = True) -> tuple[torch.Tensor, HiddenStates]:
    """The front end's output before positional encoding (B, T, D) and hidden states 0..L,
    for families that have that split (`features`, `add_positions`: what mimic layers read).
    Served from the encoder's memo inside `remember_states`."""
    memo = memo_of(enc)
    if memo is None:
        return _compute_features_and_states(enc, waves, final_norm)
    return memo.features_and_states(waves, final_norm)


def memo_of(enc: Encoder) -> StateMemo | None:
    """The encoder's active memo, if any."""
    return _MEMOS.get(enc)


@contextmanager
def remember_states(enc: Encoder) -> Iterator[StateMemo]:
    """Keep `enc`'s hidden states per clip inside the block (nested blocks share one memo)."""
    if enc in _MEMOS:
        yield _MEMOS[enc]
        return
    memo = _MEMOS[enc] = StateMemo(enc)
    try:
        yield memo
    finally:
        _MEMOS.pop(enc, None)
