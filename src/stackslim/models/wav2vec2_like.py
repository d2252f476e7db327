"""Adapter for the wav2vec 2.0 family: wav2vec2, HuBERT, WavLM, data2vec-audio.

All four share one shape: a CNN feature encoder (waveform → frames every 20 ms), a feature
projection, a convolutional positional embedding, then the Transformer stack. Two layouts:
post-LN (base models: LayerNorm before the stack, none after) and "stable layer norm"
(large models: pre-LN layers, a final LayerNorm after the stack).

Hidden state 0 is what layer 1 receives: projection + positional conv (+ LayerNorm, post-LN).
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from .base import Encoder, EncoderError, check_finite_rows

FAMILIES = {  # model_type → adapter family name
    "wav2vec2": "wav2vec2",
    "hubert": "hubert",
    "wavlm": "wavlm",
    "data2vec-audio": "data2vec-audio",
}


# Longest clip taken, in seconds. Self-attention holds heads x T^2 scores per clip and layer
# (T = 50 frames per second): at 60 s, T = 3000 and a base model's 12 heads need 0.43 GB per
# clip in float32 (a large model's 16 heads 0.58 GB), times the batch. A 5-minute clip would
# need 11 GB per clip, and the unbatched eager path far more; longer audio must be cut first.
MAX_SECONDS = 60


class Wav2Vec2LikeEncoder(Encoder):
    """Wraps a `*Model` of the wav2vec2 family (not a *ForCTC / *ForSequenceClassification).

    Clip lengths: at least the CNN's receptive field (`min_samples`: 400 samples = 25 ms for
    the standard 7-layer CNN; shorter clips give no frame and are refused, as Hugging Face's
    feature extractor does not pad them) and at most `MAX_SECONDS` (`max_samples`).
    """

    def __init__(self, model: nn.Module, name: str = "", do_normalize: bool = True):
        super().__init__(model, name)
        self.family = FAMILIES[model.config.model_type]
        self.do_normalize = do_normalize

    @property
    def encoder_module(self) -> nn.Module:
        return self.model

    @property
    def layers(self) -> nn.ModuleList:
        return self.model.encoder.layers

    @property
    def stable_layer_norm(self) -> bool:
        return bool(getattr(self.model.config, "do_stable_layer_norm", False))

    @property
    def final_norm_module(self) -> nn.Module | None:
        return self.model.encoder.layer_norm if self.stable_layer_norm else None

    def _set_num_layers(self, n: int) -> None:
        self.model.config.num_hidden_layers = n

    def _replace_layers(self, layers: nn.ModuleList, dropped: list[int]) -> None:
        if self.family == "wavlm" and 0 in dropped and len(layers) > 0:
            # WavLM computes its relative-position bias in layer 0 only and reuses it in
            # the others: the new first layer inherits the bias table so that the pruned
            # model computes the same thing, and reloads (HF builds layer 0 with the bias).
            old_first = self.model.encoder.layers[0].attention
            new_first = layers[0].attention
            new_first.rel_attn_embed = old_first.rel_attn_embed
            new_first.has_relative_position_bias = True
        self.model.encoder.layers = layers

    # -- front end -------------------------------------------------------------------
    @property
    def min_samples(self) -> int:
        """The CNN's receptive field: the fewest samples that give one frame."""
        r = 1
        cfg = self.model.config
        for k, st in reversed(list(zip(cfg.conv_kernel, cfg.conv_stride))):
            r = (r - 1) * int(st) + int(k)
        return r

    @property
    def max_samples(self) -> int:
        return MAX_SECONDS * 16_000

    def _prepare(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad raw audio into (B, S) and return sample lengths (B,)."""
        if self.do_normalize:  # zero mean, unit variance per clip, as the feature extractor does
            with np.errstate(over="ignore", invalid="ignore"):  # overflow: refused by features()
                waves = [(w - w.mean()) / np.sqrt(w.var() + 1e-7) for w in waves]
        n = torch.tensor([len(w) for w in waves])
        x = torch.zeros(len(waves), int(n.max()))
        for b, w in enumerate(waves):
            x[b, : len(w)] = torch.from_numpy(np.ascontiguousarray(w))
        return x.to(self.device), n

    def _cnn(self, x: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
        """CNN features (B, T, C). Group-norm CNNs normalise over time, so padding would
        leak into valid frames: those run clip by clip when lengths differ."""
        fe = self.model.feature_extractor
        group_norm = getattr(self.model.config, "feat_extract_norm", "group") == "group"
        if group_norm and int(n.min()) != int(n.max()):
            feats = [fe(x[b : b + 1, : int(n[b])]).transpose(1, 2) for b in range(len(n))]
            T = max(f.shape[1] for f in feats)
            out = feats[0].new_zeros(len(feats), T, feats[0].shape[2])
            for b, f in enumerate(feats):
                out[b, : f.shape[1]] = f[0]
            return out
        return fe(x).transpose(1, 2)  # (B, T, C)

    def frame_lengths(self, n_samples: torch.Tensor) -> torch.Tensor:
        return self.model._get_feat_extract_output_lengths(n_samples).long()

    def features(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Front-end output before positional encoding (B, T, D) and lengths (B,)."""
        waves = self.check_lengths(waves)
        x, n = self._prepare(waves)
        feats = self._cnn(x, n)  # (B, T, C)
        proj = self.model.feature_projection(feats)
        h = proj[0] if isinstance(proj, tuple) else proj  # (B, T, D)
        lengths = self.frame_lengths(n).to(h.device)
        mask = torch.arange(h.shape[1], device=h.device)[None] < lengths[:, None]
        h = h * mask.unsqueeze(-1).to(h.dtype)  # padded frames are 0, as HF does
        check_finite_rows(h, waves, "front-end features")
        return h, lengths

    def add_positions(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Positional conv (+ LayerNorm for post-LN layouts): features → hidden state 0."""
        enc = self.model.encoder
        if self.family == "data2vec-audio" and int(lengths.min()) != int(lengths.max()):
            # data2vec stacks several conv+norm layers: padding would leak into the clip's
            # edge frames, so each clip gets its positional conv alone
            pos = torch.zeros_like(h)
            for b, n in enumerate(lengths.tolist()):
                pos[b, :n] = enc.pos_conv_embed(h[b : b + 1, :n])[0]
            h = h + pos
        else:
            h = h + enc.pos_conv_embed(h)
        if not self.stable_layer_norm:
            h = enc.layer_norm(h)
        return enc.dropout(h)

    def front_end(self, waves: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        h, lengths = self.features(waves)
        return self.add_positions(h, lengths), lengths

    # -- stack -------------------------------------------------------------------------
    def stack_context(self, x0: torch.Tensor, lengths: torch.Tensor) -> dict:
        mask2d = torch.arange(x0.shape[1], device=x0.device)[None] < lengths[:, None]  # (B, T)
        if self.family == "wavlm":
            # WavLM's attention takes the 2-D mask and threads the position bias along
            return {"attention_mask": mask2d.long(), "position_bias": None}
        mask = create_bidirectional_mask(config=self.model.config, inputs_embeds=x0,
                                         attention_mask=mask2d.long())
        return {"attention_mask": mask}

    def run_layer(self, i: int, x: torch.Tensor, ctx: dict) -> torch.Tensor:
        layer = self.layers[i]
        if self.family == "wavlm":
            # HF's WavLM mixes a bool key-padding mask with a float bias; torch warns, harmlessly
            warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
            out, ctx["position_bias"] = layer(x, attention_mask=ctx["attention_mask"],
                                              position_bias=ctx["position_bias"], index=i)
            return out
        out = layer(x, attention_mask=ctx["attention_mask"])
        return out[0] if isinstance(out, tuple) else out


def check_wav2vec2_like(model: nn.Module, where: str) -> None:
    if getattr(model.config, "model_type", None) not in FAMILIES:
        raise EncoderError(f"{where}: model type {getattr(model.config, 'model_type', '?')!r} "
                           f"is not a wav2vec2-family encoder")
