"""Downstream checks of a shared encoder: keyword accuracy through the teacher's head, word error
rate through the original Whisper decoder, and training from scratch on a classification task.

WER: the encoder (dense or shared) gives its last hidden state (after the final norm) on each
clip; the original Whisper model decodes it greedily (`models.transcribe.transcribe` with
`encoder_states`), so only the encoder differs between teacher and student. The clip is
followed by silence up to max(6 s, clip + 3.5 s) and encoded unpadded: on the clip alone
the decoder repeats the sentence until its token limit (whisper-base, 8 eval sentences: WER
4.7), while clip + silence decodes as well as Whisper's 30 s window (WER 0.033 both; 4 s of
total length was not enough: 1.8) at about a third of the cost.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..heads.head import ClassifierHead
from ..models.base import Encoder, EncoderError
from ..train import TrainConfig, TrainLog, train


def sentence_clips(data: str = "synth-sentences", n: int = 60) -> tuple[list[np.ndarray], list[str]]:
    """`n` evenly spread clips of the set's ``split=eval`` part (all clips when it has no split
    column) and their transcripts (the label column)."""
    from ..data import load_dataset

    ds = load_dataset(data)
    idx = [i for i, c in enumerate(ds.clips) if c.get("split") in (None, "", "eval")]
    if not idx:
        raise EncoderError(f"{data}: no clips with split=eval to transcribe")
    if n and n < len(idx):
        idx = [idx[int(j)] for j in np.linspace(0, len(idx) - 1, n).round()]
    return [ds.load(i) for i in idx], [ds.clips[i].label for i in idx]


def encoder_outputs(enc: Encoder, waves: Sequence[np.ndarray], batch_size: int = 8) -> list[torch.Tensor]:
    """Last hidden state (after the final norm) of every clip, unpadded: (T_i, D) each."""
    out = []
    for s in range(0, len(waves), batch_size):
        hs = enc.hidden_states(list(waves[s : s + batch_size]))
        out += [hs.states[-1][b, :n].clone() for b, n in enumerate(hs.lengths.tolist())]
    return out


def pad_silence(waves: Sequence[np.ndarray], min_s: float = 6.0, tail_s: float = 3.5,
                sr: int = 16000) -> list[np.ndarray]:
    """Each clip followed by zeros up to max(min_s, clip + tail_s) seconds (at most 30 s)."""
    out = []
    for w in waves:
        n = int(min(30.0 * sr, max(min_s * sr, len(w) + tail_s * sr)))
        out.append(np.concatenate([w, np.zeros(max(0, n - len(w)), np.float32)]))
    return out


def whisper_wer(enc: Encoder, whisper_model, tokenizer, waves: Sequence[np.ndarray],
                refs: Sequence[str], batch_size: int = 8, max_new_tokens: int = 64) -> dict:
    """Corpus WER of `whisper_model`'s decoder reading `enc`'s states; and the transcripts."""
    from ..models.transcribe import transcribe, word_error_rate

    states = encoder_outputs(enc, pad_silence(waves), batch_size)
    hyps = transcribe(whisper_model, tokenizer, encoder_states=states, batch_size=batch_size,
                      max_new_tokens=max_new_tokens)
    return {"wer": word_error_rate(list(refs), hyps), "clips": len(refs), "hypotheses": hyps}


def load_tokenizer(spec: str):
    """The Whisper model and tokenizer of a model spec, or (None, reason) when there is none."""
    try:
        from ..models.transcribe import load_whisper

        return load_whisper(spec)
    except (EncoderError, ImportError, OSError) as e:
        return None, f"no Whisper tokenizer for {spec!r}: {e}"


# -- from scratch -----------------------------------------------------------------------------
def _logits(enc: Encoder, head: ClassifierHead, waves: Sequence[np.ndarray]) -> torch.Tensor:
    x0, n = enc.front_end(list(waves))  # (B, T, D), (B,)
    h = enc.stack_forward(x0, n, final_norm=True, keep=False).states[-1]
    return head(h, n)  # (B, C)


@torch.no_grad()
def wave_accuracy(enc: Encoder, head: ClassifierHead, waves: Sequence[np.ndarray], y: torch.Tensor,
                  batch_size: int = 32) -> float:
    """Accuracy of encoder + head on clips (no cached states)."""
    enc.eval()
    head.eval()
    right = 0
    for s in range(0, len(waves), batch_size):
        right += int((_logits(enc, head, waves[s : s + batch_size]).argmax(-1) == y[s : s + batch_size]).sum())
    return right / max(len(waves), 1)


def train_from_scratch(enc: Encoder, num_classes: int, train_waves: Sequence[np.ndarray],
                       train_y: torch.Tensor, val_waves: Sequence[np.ndarray], val_y: torch.Tensor,
                       cfg: TrainConfig, proj_size: int = 256, progress: bool = True
                       ) -> tuple[ClassifierHead, TrainLog]:
    """Train every parameter of `enc` (front end, stack) and a new head with cross-entropy.

    The same function trains the dense baseline and the residual models (the paper's
    comparison); the best validation epoch is kept.
    """
    torch.manual_seed(cfg.seed)
    head = ClassifierHead(enc.hidden_size, num_classes, proj_size).to(enc.device)
    module = torch.nn.ModuleDict({"encoder": enc.encoder_module, "head": head})

    def step_loss(rows: Sequence[int]) -> torch.Tensor:
        return F.cross_entropy(_logits(enc, head, [train_waves[r] for r in rows]), train_y[list(rows)])

    params = list({id(p): p for p in module.parameters()}.values())
    log = train(module, len(train_waves), step_loss, cfg, params=params, desc="from scratch",
                validate=lambda: wave_accuracy(enc, head, val_waves, val_y), progress=progress)
    enc.eval()
    return head, log
