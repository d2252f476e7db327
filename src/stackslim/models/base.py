"""The one interface every speech encoder family sits behind.

Terms (DESIGN.md): *layer* = one Transformer block of the stack; *hidden state i* = the
output of layer i, with hidden state 0 = the stack's input (after the front end, positional
information included, exactly what layer 1 receives); *front end* = everything before the stack.

States are collected with our own forward hooks on the layers, so the convention is the
same for every family: states 1..L-1 are the raw outputs of layers 1..L-1, and state L is the
output of the last layer, after the family's final LayerNorm when it has one and
``final_norm=True`` (the default: that is what a head or the Whisper decoder sees).
`HiddenStates.final_norm` states which was done.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16_000


class EncoderError(ValueError):
    """A model spec, folder or argument that stackslim cannot use (one-line message)."""


@dataclass
class HiddenStates:
    """Per-layer states of one batch.

    Attributes:
        states: L+1 tensors (B, T, D): hidden states 0..L. Frames t >= lengths[b] are padding.
        lengths: (B,) int64, valid frames per clip.
        final_norm: True if state L has the family's final norm applied, False if taken
            before it, None if the family has no final norm after the stack.
    """

    states: list[torch.Tensor]
    lengths: torch.Tensor
    final_norm: bool | None

    @property
    def encoder_module(self) -> nn.Module:
        """The part of `self.model` that is the encoder (front end + stack + final norm)."""
        return self.model

    @property
    def num_layers(self) -> int:
        return len(self.states) - 1

    def mask(self) -> torch.Tensor:
        """(B, T) bool, True on valid frames."""
        T = self.states[0].shape[1]
        return torch.arange(T, device=self.lengths.device)[None, :] < self.lengths[:, None]

    def pooled(self, i: int) -> torch.Tensor:
        """(B, D) mean of hidden state i over each clip's valid frames."""
        m = self.mask().to(self.states[i].dtype).unsqueeze(-1)  # (B, T, 1)
        return (self.states[i] * m).sum(1) / self.lengths.clamp(min=1).to(m.dtype)[:, None]

    def frames(self, i: int) -> torch.Tensor:
        """(N, D) every valid frame of hidden state i (N = lengths.sum())."""
        return self.states[i][self.mask()]


def as_waves(waves: Sequence[np.ndarray | torch.Tensor]) -> list[np.ndarray]:
    """Check a batch of 1-D 16 kHz clips and return them as float32 numpy arrays."""
    if len(waves) == 0:
        raise EncoderError("empty batch: give at least one clip")
    out = []
    for i, w in enumerate(waves):
        a = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asarray(w)
        if a.ndim != 1:
            raise EncoderError(f"clip {i}: expected a 1-D mono waveform, got shape {a.shape}")
        if a.size == 0:
            raise EncoderError(f"clip {i}: empty waveform")
        if not np.isfinite(a).all():
            raise EncoderError(f"clip {i}: waveform has NaN or inf samples")
        out.append(a.astype(np.float32, copy=False))
    return out


class Encoder(nn.Module):
    """Base class of the family adapters. Subclasses implement the abstract methods.

    The wrapped Hugging Face module is `self.model`; `self.layers` is its stack
    (an nn.ModuleList) and `self.final_norm_module` its final norm or None.
    """

    family: str = "?"

    def __init__(self, model: nn.Module, name: str = ""):
        super().__init__()
        self.model = model
        self.name = name or getattr(model.config, "_name_or_path", "") or self.family

    # -- to implement per family -------------------------------------------------
    @property
    def layers(self) -> nn.ModuleList:
        raise NotImplementedError

    @property
    def final_norm_module(self) -> nn.Module | None:
        raise NotImplementedError

    def front_end(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden state 0 (B, T, D) and lengths (B,): the stack's input for `waves`."""
        raise NotImplementedError

    def stack_context(self, x0: torch.Tensor, lengths: torch.Tensor) -> dict:
        """What every layer of one forward needs besides its input (attention mask, ...)."""
        raise NotImplementedError

    def run_layer(self, i: int, x: torch.Tensor, ctx: dict) -> torch.Tensor:
        """Apply layer i (0-based) to x (B, T, D); padded keys masked through `ctx`."""
        raise NotImplementedError

    def _set_num_layers(self, n: int) -> None:
        """Update the wrapped config after the stack changed length."""
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        """Write a plain Hugging Face folder (safetensors) that `load_encoder` reads back."""
        from .io import save_encoder

        save_encoder(self, Path(path))

    # -- shared ------------------------------------------------------------------
    @property
    def encoder_module(self) -> nn.Module:
        """The part of `self.model` that is the encoder (front end + stack + final norm)."""
        return self.model

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size if hasattr(self.model.config, "hidden_size")
                   else self.model.config.d_model)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def stack_forward(self, x0: torch.Tensor, lengths: torch.Tensor, final_norm: bool = True,
                      keep: bool = True) -> HiddenStates:
        """Run the stack on hidden state 0. keep=False keeps only states 0 and L."""
        states = [x0]
        h = x0
        ctx = self.stack_context(x0, lengths)
        for i in range(self.num_layers):
            h = self.run_layer(i, h, ctx)
            if keep or i == self.num_layers - 1:
                states.append(h)
        norm = self.final_norm_module
        applied: bool | None = None
        if norm is not None:
            applied = bool(final_norm)
            if final_norm:
                states[-1] = norm(states[-1])
        return HiddenStates(states=states, lengths=lengths, final_norm=applied)

    @torch.inference_mode()
    def hidden_states(self, waves: Sequence[np.ndarray | torch.Tensor],
                      final_norm: bool = True) -> HiddenStates:
        """Hidden states 0..L of a batch of 16 kHz mono clips (list of 1-D arrays).

        Inside `models.memo.remember_states(self)` clips seen before are not run again."""
        from .memo import memo_of  # memo builds on this module

        memo = memo_of(self)
        if memo is not None:
            return memo.hidden_states(waves, final_norm, self._compute_hidden_states)
        return self._compute_hidden_states(waves, final_norm)

    def _compute_hidden_states(self, waves: Sequence[np.ndarray | torch.Tensor],
                               final_norm: bool = True) -> HiddenStates:
        self.model.eval()
        x0, lengths = self.front_end(as_waves(waves))
        return self.stack_forward(x0, lengths, final_norm=final_norm)

    @torch.inference_mode()
    def encode(self, waves: Sequence[np.ndarray | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden state (B, T, D) and lengths: what a head consumes."""
        hs = self.hidden_states(waves)
        return hs.states[-1], hs.lengths

    def check_layer_indices(self, indices: Sequence[int]) -> list[int]:
        idx = sorted(set(int(i) for i in indices))
        bad = [i for i in idx if not 0 <= i < self.num_layers]
        if bad:
            raise EncoderError(f"layer index {bad[0]} out of range: {self.name} has "
                               f"{self.num_layers} layers (0-based indices 0..{self.num_layers - 1})")
        return idx

    def without_layers(self, indices: Sequence[int]) -> "Encoder":
        """A deep copy without the given layers (0-based), config updated."""
        drop = set(self.check_layer_indices(indices))
        new = copy.deepcopy(self)
        kept = [layer for i, layer in enumerate(new.layers) if i not in drop]
        new._replace_layers(nn.ModuleList(kept), dropped=sorted(drop))
        new._set_num_layers(len(kept))
        return new

    def _replace_layers(self, layers: nn.ModuleList, dropped: list[int]) -> None:
        raise NotImplementedError

    def num_params(self, stack_only: bool = False) -> int:
        """Unique parameters (a shared tensor counted once)."""
        mod = self.layers if stack_only else self.encoder_module
        seen: set[int] = set()
        n = 0
        for p in mod.parameters():
            if id(p) not in seen:
                seen.add(id(p))
                n += p.numel()
        return n
