"""Traceable forward passes of every encoder stackslim loads, for `torch.onnx.export`.

The adapters' own forwards take lists of numpy clips and run some families clip by clip (a
group-norm CNN or data2vec's stacked positional convolutions would otherwise let the padding
change valid frames). An exported graph takes one padded batch instead, so these modules
compute the same valid frames from the batch with masks:

- wav2vec2 family, input ``waves`` (B, S) float32 16 kHz zero-padded and ``lengths`` (B,)
  int64 samples: per-clip normalisation over the valid samples (when the model normalises),
  the CNN with its first GroupNorm's statistics taken over each clip's valid frames only
  (a conv without padding never reads past a clip for a valid output frame), the feature
  projection, padded frames zeroed before (and, for data2vec, between) the positional
  convolutions, then the layers with padded keys masked.
- Whisper, input ``features`` (B, n_mels, M) log-mel and ``lengths`` (B,) int64 valid mel
  frames (stackslim's unpadded mode: each clip's own log-mel, zeros after it; or 30 s
  windows in padded mode): conv1, GELU, conv1's output zeroed past each clip (unpadded),
  conv2, GELU, positions, the layers with padded keys masked (unpadded), the final norm.

Outputs: ``last_hidden_state`` (B, T, D), ``lengths`` (B,) int64 valid frames, and
``logits`` (B, C) where the model has a head (an ASR mimic has none: its last state is what
the Whisper decoder reads). Layers run through the adapter's own
`run_layer`, so pruned and shared (ResidualTransformer) stacks export as they compute.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..models.base import Encoder


def valid_mask(lengths: torch.Tensor, T: int | torch.Tensor) -> torch.Tensor:
    """(B, T) bool, True on valid frames (T may be a traced size)."""
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def masked_group_norm(x: torch.Tensor, lengths: torch.Tensor, gn: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm with one group per channel over each clip's valid frames only.

    x (B, C, T), lengths (B,) → (B, C, T): what the GroupNorm computes on each clip alone.
    """
    m = valid_mask(lengths, x.shape[2]).to(x.dtype)[:, None, :]  # (B, 1, T)
    n = lengths.clamp(min=1).to(x.dtype)[:, None, None]  # (B, 1, 1)
    mean = (x * m).sum(2, keepdim=True) / n  # (B, C, 1)
    var = (((x - mean) * m) ** 2).sum(2, keepdim=True) / n
    y = (x - mean) / torch.sqrt(var + gn.eps)
    return y * gn.weight[None, :, None] + gn.bias[None, :, None]


def additive_key_mask(valid: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, 1, T, T) float: 0 on valid keys, the dtype's minimum on padded ones."""
    pad = (~valid)[:, None, None, :].to(dtype)  # (B, 1, 1, T)
    return (pad * torch.finfo(dtype).min).expand(-1, 1, valid.shape[1], -1)


class Wav2Vec2Graph(nn.Module):
    """waves (B, S), lengths (B,) samples → features before positions (B, T, D), lengths (B,)."""

    def __init__(self, enc: Encoder):
        super().__init__()
        self.enc = enc
        self.model = enc.model
        self.do_normalize = bool(getattr(enc, "do_normalize", True))
        for layer in self.model.feature_extractor.conv_layers:
            gn = getattr(layer, "layer_norm", None)
            if isinstance(gn, nn.GroupNorm) and gn.num_groups != gn.num_channels:
                raise ValueError("a GroupNorm CNN layer with several channels per group cannot be exported")

    def features(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        S = waves.shape[1]
        m = valid_mask(lengths, S).to(waves.dtype)  # (B, S)
        if self.do_normalize:  # zero mean, unit variance over each clip's own samples
            n = lengths.clamp(min=1).to(waves.dtype)[:, None]
            mean = (waves * m).sum(1, keepdim=True) / n
            var = (((waves - mean) * m) ** 2).sum(1, keepdim=True) / n
            waves = (waves - mean) / torch.sqrt(var + 1e-7)
        x = (waves * m)[:, None, :]  # (B, 1, S)
        frames = lengths
        for layer in self.model.feature_extractor.conv_layers:
            conv = layer.conv
            frames = torch.div(frames - conv.kernel_size[0], conv.stride[0], rounding_mode="floor") + 1
            if isinstance(getattr(layer, "layer_norm", None), nn.GroupNorm):
                x = layer.activation(masked_group_norm(conv(x), frames, layer.layer_norm))
            else:
                x = layer(x)  # frame-wise (LayerNorm over channels, or none): nothing leaks
        proj = self.model.feature_projection(x.transpose(1, 2))
        h = proj[0] if isinstance(proj, tuple) else proj  # (B, T, D)
        h = h * valid_mask(frames, h.shape[1]).to(h.dtype)[..., None]
        return h, frames

    def add_positions(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Positional conv (+ LayerNorm, post-LN) on features with zeroed padding (B, T, D)."""
        enc = self.model.encoder
        pos_conv = enc.pos_conv_embed
        if hasattr(pos_conv, "layers"):  # data2vec: conv+norm layers, re-zero padding after each
            m = valid_mask(lengths, h.shape[1]).to(h.dtype)[:, None, :]  # (B, 1, T)
            x = h.transpose(1, 2)
            for layer in pos_conv.layers:
                x = layer(x) * m
            pos = x.transpose(1, 2)
        else:
            pos = pos_conv(h)
        h = h + pos
        if not getattr(self.enc, "stable_layer_norm", False):
            h = enc.layer_norm(h)
        return h

    def stack(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        valid = valid_mask(lengths, x.shape[1])  # (B, T)
        if self.enc.family == "wavlm":
            ctx = {"attention_mask": valid.long(), "position_bias": None}
        else:
            ctx = {"attention_mask": additive_key_mask(valid, x.dtype)}
        for i in range(self.enc.num_layers):
            x = self.enc.run_layer(i, x, ctx)
        norm = self.enc.final_norm_module
        return norm(x) if norm is not None else x


class WhisperGraph(nn.Module):
    """features (B, n_mels, M), lengths (B,) mel frames → conv front end (B, T, D), lengths (B,)."""

    def __init__(self, enc: Encoder):
        super().__init__()
        self.enc = enc
        self.padded = getattr(enc, "mode", "unpadded") == "padded"

    def features(self, mel: torch.Tensor, m_valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.enc.encoder_module
        h = F.gelu(e.conv1(mel))  # (B, D, M)
        if not self.padded:  # conv2 sees at each clip's edge what it sees on the clip alone
            h = h * valid_mask(m_valid, h.shape[2]).to(h.dtype)[:, None, :]
        h = F.gelu(e.conv2(h)).permute(0, 2, 1)  # (B, T, D)
        lengths = torch.div(m_valid - 1, 2, rounding_mode="floor") + 1  # conv2: k3 s2 p1
        return h, torch.minimum(lengths, torch.full_like(lengths, 1) * h.shape[1])

    def add_positions(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """h + the first T rows of the position table, read by index (an ONNX Gather, which
        `onnxruntime.quantization` stores int8; a slice of the table would stay float)."""
        rows = torch.arange(h.shape[1], device=h.device)  # (T,)
        return h + self.enc.encoder_module.embed_positions(rows)

    def stack(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = None if self.padded else additive_key_mask(valid_mask(lengths, x.shape[1]), x.dtype)
        for i in range(self.enc.num_layers):
            out = self.enc.layers[i](x, mask)
            x = out[0] if isinstance(out, tuple) else out
        return self.enc.final_norm_module(x)


def front_graph(enc: Encoder) -> nn.Module:
    """The traceable front end + stack of `enc`'s family."""
    return WhisperGraph(enc) if enc.family == "whisper" else Wav2Vec2Graph(enc)


class EncoderGraph(nn.Module):
    """A dense, pruned or shared encoder (and its head, if any) as one traceable forward."""

    def __init__(self, enc: Encoder, head: nn.Module | None = None):
        super().__init__()
        self.graph = front_graph(enc)
        self.head = head

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        h, n = self.graph.features(x, lengths)
        h = self.graph.stack(self.graph.add_positions(h, n), n)  # (B, T, D)
        if self.head is None:
            return h, n
        return h, n, self.head(h, n)


def _transformer_mimic(layer: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """`TransformerMimic` (post-LN, ReLU) written out with shape-free reshapes: PyTorch's fused
    fast path does not export, and its functional form traces the batch's sizes as constants."""
    t = layer.layer
    sa = t.self_attn
    H = sa.num_heads
    valid = valid_mask(lengths, x.shape[1])  # (B, T)
    q, k, v = F.linear(x, sa.in_proj_weight, sa.in_proj_bias).chunk(3, dim=-1)  # (B, T, d) each
    q, k, v = (z.unflatten(-1, (H, -1)).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d/H)
    a = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_key_mask(valid, x.dtype))
    a = sa.out_proj(a.transpose(1, 2).flatten(2))  # (B, T, d)
    x = t.norm1(x + a)
    x = t.norm2(x + t._ff_block(x))
    return x.masked_fill(~valid[..., None], 0.0)


class MimicGraph(nn.Module):
    """A `MimicModel`: front end before positions, (positions), mimic layers, head.

    Outputs (h, lengths, logits), or (h, lengths) for a mimic without a head (``--task asr``:
    h (B, T, d), the last mimic layer's output, is what the teacher's Whisper decoder reads)."""

    def __init__(self, mimic: nn.Module):
        super().__init__()
        self.mimic = mimic
        self.graph = front_graph(mimic.front)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        h, n = self.graph.features(x, lengths)
        if self.mimic.positions:
            h = self.graph.add_positions(h, n)
        for layer in self.mimic.layers:
            h = _transformer_mimic(layer, h, n) if hasattr(layer, "layer") else layer(h, n)
        if self.mimic.head is None:
            return h, n
        return h, n, self.mimic.head(h, n)
