"""Helpers of the transcription tests on the tiny random Whisper (`random:whisper`, vocab 128):
a stand-in tokenizer, a decoder made to read the encoder's states, and a transcribed manifest
of noise clips."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from stackslim.data import Clip, write_manifest, write_wav


class WordTokenizer:
    """A stand-in Whisper tokenizer for the random model (vocab 128): eot is the last id (so
    that greedy decoding masks nothing and runs a few tokens), every id before it a word."""

    ids = {"<|startoftranscript|>": 125, "<|notimestamps|>": 126, "<|endoftext|>": 127}

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self.ids.get(token)

    def decode(self, toks, skip_special_tokens: bool = True) -> str:
        return " ".join(f"w{t}" for t in toks if t != 127)


@torch.no_grad()
def make_decoder_listen(enc) -> None:
    """Scale up the random Whisper decoder's cross-attention values (× 6) and its final norm
    (× 30), in place: at init its logits are near uniform whatever it reads, so no encoder
    could change its loss or its transcripts."""
    for layer in enc.model.model.decoder.layers:
        layer.encoder_attn.v_proj.weight.mul_(6.0)
        layer.encoder_attn.out_proj.weight.mul_(6.0)
    enc.model.model.decoder.layer_norm.weight.mul_(30.0)


def write_noise_sentences(root: Path, splits: list[str], step: int = 480) -> Path:
    """root/manifest.csv: clip i is 0.1-scaled noise of 4800 + step·i samples (16 kHz), its
    transcript "w{i} w{i+1} w{i+2}" and its split `splits[i]`; returns `root`."""
    rng = np.random.default_rng(0)
    clips = []
    for i, split in enumerate(splits):
        p = root / f"c{i}.wav"
        write_wav(p, (0.1 * rng.standard_normal(4800 + step * i)).astype(np.float32))
        clips.append(Clip(path=p, label=f"w{i} w{i + 1} w{i + 2}", speaker="s", extra={"split": split}))
    write_manifest(root / "manifest.csv", clips)
    return root
