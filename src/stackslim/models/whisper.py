"""Adapter for the Whisper encoder (Hugging Face `WhisperForConditionalGeneration` or `WhisperModel`).

Front end: log-mel (80 or 128 bins, 10 ms hop) → conv1 (k3, s1) → GELU → conv2 (k3, s2) → GELU
→ + sinusoidal/learned positions = hidden state 0 (one frame per 20 ms). Pre-LN layers, then a
final LayerNorm after the stack.

Two modes:
- ``unpadded`` (default for clips ≤ 30 s): the mel of each clip alone, positions sliced to its
  length, padded keys masked in attention. About 13× faster on 1 s clips than padded mode.
- ``padded``: Hugging Face's own input, every clip padded to 30 s (3000 mel frames, 1500 states);
  `lengths` still marks the frames that hold the clip. Needed when the decoder must see exactly
  what it was trained on. How far the two differ is measured by `bench/whisper_unpadded.py`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers import WhisperFeatureExtractor

from .base import Encoder, EncoderError, check_finite_rows

HOP = 160  # samples per mel frame at 16 kHz


class WhisperEncoderAdapter(Encoder):
    family = "whisper"

    def __init__(self, model: nn.Module, name: str = "", mode: str = "unpadded"):
        super().__init__(model, name)
        if mode not in ("unpadded", "padded"):
            raise EncoderError(f"whisper mode must be 'unpadded' or 'padded', got {mode!r}")
        self.mode = mode
        self.feature_extractor = WhisperFeatureExtractor(feature_size=model.config.num_mel_bins)

    @property
    def encoder_module(self) -> nn.Module:
        return self.model.get_encoder()

    @property
    def layers(self) -> nn.ModuleList:
        return self.encoder_module.layers

    @property
    def final_norm_module(self) -> nn.Module | None:
        return self.encoder_module.layer_norm

    def _set_num_layers(self, n: int) -> None:
        self.model.config.encoder_layers = n

    def _replace_layers(self, layers: nn.ModuleList, dropped: list[int]) -> None:
        self.encoder_module.layers = layers

    @property
    def max_frames(self) -> int:
        return int(self.model.config.max_source_positions)

    # Clip lengths: at most Whisper's 30 s window (max_source_positions states of 2 mel frames);
    # at least one mel frame (HOP samples, 10 ms): a shorter clip is zero-padded to it, as
    # Whisper itself zero-pads every clip to 30 s.
    pads_short_clips = True

    @property
    def min_samples(self) -> int:
        return HOP

    @property
    def max_samples(self) -> int:
        return self.max_frames * 2 * HOP

    # -- front end -----------------------------------------------------------------------
    def log_mel(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel features (B, n_mels, M) and valid mel frames per clip (B,)."""
        waves = self.check_lengths(waves)  # names the file of a clip over 30 s
        m_valid = torch.tensor([max(len(w) // HOP, 1) for w in waves])
        if self.mode == "padded":
            feats = self.feature_extractor(list(waves), sampling_rate=16000, return_tensors="pt")
            return feats.input_features, m_valid
        with np.errstate(over="ignore", invalid="ignore"):  # overflow: refused by features()
            mels = [self.feature_extractor._np_extract_fbank_features(w[None], "cpu")[0] for w in waves]
        M = max(m.shape[1] for m in mels)
        out = np.empty((len(mels), mels[0].shape[0], M), dtype=np.float32)
        for b, m in enumerate(mels):
            # zeros beyond the clip: exactly what conv1's own zero padding gives a clip alone
            out[b, :, : m.shape[1]] = m
            out[b, :, m.shape[1]:] = 0.0
        return torch.from_numpy(out), m_valid

    def features(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Convolutional front end before positions: (B, T, D) and lengths (B,)."""
        mel, m_valid = self.log_mel(waves)
        enc = self.encoder_module
        mel = mel.to(self.device, dtype=enc.conv1.weight.dtype)
        h = nn.functional.gelu(enc.conv1(mel))  # (B, D, M)
        if self.mode == "unpadded":
            # zero conv1's output past each clip so that conv2 sees at the clip's edge what
            # it sees on the clip alone: batching does not change any valid frame
            valid = torch.arange(h.shape[2], device=h.device)[None] < m_valid.to(h.device)[:, None]
            h = h * valid[:, None, :].to(h.dtype)
        h = nn.functional.gelu(enc.conv2(h)).permute(0, 2, 1)  # (B, T, D)
        check_finite_rows(h, waves, "front-end features")
        lengths = ((m_valid - 1) // 2 + 1).clamp(max=h.shape[1]).to(h.device)  # conv2: k3 s2 p1
        return h, lengths

    def add_positions(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        enc = self.encoder_module
        T = h.shape[1]
        h = h + enc.embed_positions.weight[:T]
        return nn.functional.dropout(h, p=enc.dropout, training=enc.training)

    def front_end(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        h, lengths = self.features(waves)
        return self.add_positions(h, lengths), lengths

    # -- stack ---------------------------------------------------------------------------
    def stack_context(self, x0: torch.Tensor, lengths: torch.Tensor) -> dict:
        if self.mode == "padded":
            return {"attention_mask": None}  # Whisper attends to its 30 s padding by design
        B, T, _ = x0.shape
        valid = torch.arange(T, device=x0.device)[None] < lengths[:, None]  # (B, T)
        if bool(valid.all()):
            return {"attention_mask": None}
        # additive mask over keys (B, 1, T, T): padded keys get the dtype's minimum
        mask = torch.zeros(B, 1, T, T, dtype=x0.dtype, device=x0.device)
        mask.masked_fill_(~valid[:, None, None, :], torch.finfo(x0.dtype).min)
        return {"attention_mask": mask}

    def run_layer(self, i: int, x: torch.Tensor, ctx: dict) -> torch.Tensor:
        out = self.layers[i](x, ctx["attention_mask"])
        return out[0] if isinstance(out, tuple) else out
