"""Tiny random configs of every supported family, for tests and quick trials (offline).

About 160k parameters for the wav2vec2 family (hidden 64, 4 layers); a 1 s forward takes a
few milliseconds. `random:<family>` in `load_encoder` builds one of these.
"""
from __future__ import annotations

import torch
from transformers import (Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel,
                          Wav2Vec2Config, Wav2Vec2Model, WavLMConfig, WavLMModel, WhisperConfig,
                          WhisperForConditionalGeneration)

from .base import EncoderError

_W2V_COMMON = dict(
    hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
    conv_dim=(32, 32, 32), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
    num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
    hidden_dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0,
    layerdrop=0.0, mask_time_prob=0.0,
)

RANDOM_FAMILIES = ("wav2vec2", "wav2vec2-stable", "hubert", "wavlm", "data2vec-audio", "whisper")


def random_model(family: str, num_layers: int = 4, seed: int = 0) -> torch.nn.Module:
    """A small randomly initialised Hugging Face model of `family` (see RANDOM_FAMILIES).

    `wav2vec2-stable` is the pre-LN ("large") layout, with a final LayerNorm after the stack.
    """
    torch.manual_seed(seed)
    common = dict(_W2V_COMMON, num_hidden_layers=num_layers)
    if family == "wav2vec2":
        return Wav2Vec2Model(Wav2Vec2Config(**common))
    if family == "wav2vec2-stable":
        return Wav2Vec2Model(Wav2Vec2Config(**common, do_stable_layer_norm=True,
                                            feat_extract_norm="layer"))
    if family == "hubert":
        return HubertModel(HubertConfig(**common))
    if family == "wavlm":
        return WavLMModel(WavLMConfig(**common, num_buckets=32, max_bucket_distance=100))
    if family == "data2vec-audio":
        cfg = dict(common)
        cfg.pop("num_conv_pos_embeddings")
        return Data2VecAudioModel(Data2VecAudioConfig(**cfg, conv_pos_kernel_size=5,
                                                      num_conv_pos_embeddings=2))
    if family == "whisper":
        cfg = WhisperConfig(
            vocab_size=128, num_mel_bins=80, d_model=64, encoder_layers=num_layers,
            decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
            encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500,
            max_target_positions=64, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
            pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
        )
        return WhisperForConditionalGeneration(cfg)
    raise EncoderError(f"unknown random family {family!r}; choose one of {', '.join(RANDOM_FAMILIES)}")
