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
import json
import shutil
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.audio import Wave, clip_name
from ..errors import EncoderError
from ..results import atomic_dir

SAMPLE_RATE = 16_000
META = "stackslim.json"  # beside a saved model: the adapter options
# the active state memo of an encoder (`models.memo.remember_states`), read by hidden_states
MEMOS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


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
    """Check a batch of 1-D 16 kHz clips and return them as float32 numpy arrays.

    A clip loaded from a data set (`data.Wave`) keeps its file, and every message names it."""
    if len(waves) == 0:
        raise EncoderError("empty batch: give at least one clip")
    out = []
    for i, w in enumerate(waves):
        a = w.detach().cpu().numpy() if isinstance(w, torch.Tensor) else np.asanyarray(w)
        if a.ndim != 1:
            raise EncoderError(f"{clip_name(w, i)}: expected a 1-D mono waveform, got shape {a.shape}")
        if a.size == 0:
            raise EncoderError(f"{clip_name(w, i)}: empty waveform")
        if not np.isfinite(a).all():
            raise EncoderError(f"{clip_name(w, i)}: waveform has NaN or inf samples")
        if a.dtype != np.float32:
            a = Wave.of(a.astype(np.float32), a.path) if getattr(a, "path", None) else a.astype(np.float32)
        out.append(a)
    return out


def check_finite_rows(x: torch.Tensor, waves: Sequence, what: str) -> None:
    """Raise EncoderError naming the first clip whose row of x (B, ...) holds NaN or inf."""
    bad = ~torch.isfinite(x).flatten(1).all(1)  # (B,)
    if bool(bad.any()):
        b = int(torch.nonzero(bad)[0])
        w = waves[b].detach().cpu().numpy() if isinstance(waves[b], torch.Tensor) else waves[b]
        peak = float(np.abs(np.asarray(w, dtype=np.float64)).max())
        hint = "; audio samples should lie in [-1, 1]" if peak > 1e4 else ""
        raise EncoderError(f"{clip_name(waves[b], b)}: {what} contain NaN or inf (largest sample "
                           f"magnitude {peak:.3g}{hint})")


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

    # -- clip lengths (per family) ---------------------------------------------------
    @property
    def min_samples(self) -> int:
        """Shortest clip the front end takes (its receptive field), in samples."""
        raise NotImplementedError

    @property
    def max_samples(self) -> int:
        """Longest clip the adapter takes, in samples (see each family for why)."""
        raise NotImplementedError

    #: what a clip shorter than `min_samples` gets: refused (False) or zero-padded (True,
    #: where the family pads clips itself, as Whisper pads every clip to 30 s)
    pads_short_clips: bool = False

    def check_lengths(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The batch with every clip's length checked against the family's bounds.

        A clip longer than `max_samples` is refused, one shorter than `min_samples` refused
        or zero-padded at its end (`pads_short_clips`, with a warning); messages name the file.
        """
        lo, hi = self.min_samples, self.max_samples
        out = []
        for i, w in enumerate(waves):
            n = len(w)
            if n > hi:
                raise EncoderError(f"{clip_name(w, i)}: clip is {n} samples ({n / SAMPLE_RATE:.2f} s) "
                                   f"long, over the {hi} samples ({hi / SAMPLE_RATE:g} s) that "
                                   f"{self.family} models take at most: cut it into shorter clips")
            if n < lo:
                if not self.pads_short_clips:
                    raise EncoderError(
                        f"{clip_name(w, i)}: clip is {n} samples ({1000 * n / SAMPLE_RATE:.1f} ms) "
                        f"long, shorter than the {lo} samples ({1000 * lo / SAMPLE_RATE:g} ms) of "
                        f"{self.family}'s front end (its receptive field)")
                warnings.warn(f"{clip_name(w, i)}: clip of {n} samples zero-padded to {lo} "
                              f"samples, the shortest {self.family}'s front end takes", stacklevel=3)
                w = np.concatenate([np.asarray(w, dtype=np.float32), np.zeros(lo - n, np.float32)])
            out.append(w)
        return out

    def save(self, path: str | Path) -> None:
        """Write a plain Hugging Face folder (safetensors) that `load_encoder` reads back."""
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
        memo = MEMOS.get(self)  # set by `models.memo.remember_states`
        if memo is not None:
            return memo.hidden_states(waves, final_norm, self._compute_hidden_states)
        return self._compute_hidden_states(waves, final_norm)

    def _compute_hidden_states(self, waves: Sequence[np.ndarray | torch.Tensor],
                               final_norm: bool = True) -> HiddenStates:
        self.model.eval()
        waves = as_waves(waves)
        x0, lengths = self.front_end(waves)
        hs = self.stack_forward(x0, lengths, final_norm=final_norm)
        for h in hs.states:
            check_finite_rows(h, waves, "hidden states")
        return hs

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


def read_meta(path: str | Path) -> dict:
    """A metadata JSON file of a model folder (stackslim.json, head.json, mimic.json, ...) as a
    dict; a missing, unreadable, corrupt or non-object file raises EncoderError naming it."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise EncoderError(f"{path}: corrupt metadata file, not valid JSON ({e.msg} at line {e.lineno} "
                           f"column {e.colno})") from None
    except UnicodeDecodeError:
        raise EncoderError(f"{path}: corrupt metadata file, not UTF-8 text") from None
    except OSError as e:
        raise EncoderError(f"{path}: cannot read metadata file ({e.strerror})") from None
    if not isinstance(meta, dict):
        raise EncoderError(f"{path}: corrupt metadata file, a JSON {type(meta).__name__} where an "
                           "object was expected")
    return meta


def save_encoder(enc: Encoder, path: Path) -> None:
    """Write `enc` as a plain Hugging Face folder, atomically (temp folder, then rename), with
    ``stackslim.json`` (the adapter options) and the model's side files (tokenizer, ...)."""
    with atomic_dir(path) as tmp:
        enc.model.save_pretrained(tmp, safe_serialization=True)
        meta = {"family": enc.family, "name": enc.name, "num_layers": enc.num_layers,
                "mode": getattr(enc, "mode", None), "do_normalize": getattr(enc, "do_normalize", True)}
        (tmp / META).write_text(json.dumps(meta, indent=2))
        for f in getattr(enc, "extra_files", []):  # e.g. Whisper's tokenizer files
            shutil.copy(f, tmp / Path(f).name)
        if not (tmp / "preprocessor_config.json").exists():
            feature_extractor_of(enc).save_pretrained(tmp)  # AutoFeatureExtractor reads it


def feature_extractor_of(enc: Encoder):
    """The Hugging Face feature extractor that computes what `enc`'s front end reads.

    Whisper: `WhisperFeatureExtractor` with the model's mel bins; wav2vec2 family:
    `Wav2Vec2FeatureExtractor` (16 kHz, mono) normalising as the adapter does, with an
    attention mask for layer-norm CNNs (the "large" layout), as the published checkpoints do.
    """
    from transformers import Wav2Vec2FeatureExtractor, WhisperFeatureExtractor

    cfg = enc.model.config
    if enc.family == "whisper":
        return WhisperFeatureExtractor(feature_size=int(cfg.num_mel_bins), sampling_rate=16000)
    return Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0,
        do_normalize=bool(getattr(enc, "do_normalize", True)),
        return_attention_mask=getattr(cfg, "feat_extract_norm", "group") == "layer")
