"""The model's own task head, when the checkpoint has one.

`AutoModelForAudioClassification` checkpoints of the wav2vec 2.0 family
(`Wav2Vec2ForSequenceClassification`, HuBERT, WavLM, data2vec-audio) end in exactly the paper's
head: projector d→P, mean over valid frames, linear classifier P→C. Their weights
(`projector.*`, `classifier.*`) load into a `ClassifierHead` unchanged, and the class names
come from the config's `id2label`. `load_encoder` on the same folder gives the encoder (the
head's weights are ignored there).

Not supported (an error says so): `use_weighted_layer_sum=True` (the head reads a weighted sum of
every layer, not the last state) and Whisper's `WhisperForAudioClassification`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open

from ..models.base import EncoderError
from .head import ClassifierHead

HEAD_KEYS = ("projector.weight", "projector.bias", "classifier.weight", "classifier.bias")


def has_own_head(path: str | os.PathLike) -> bool:
    """True when `path` is a folder whose config names a *ForSequenceClassification /
    *ForAudioClassification architecture."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        archs = json.loads(cfg.read_text()).get("architectures") or []
    except (json.JSONDecodeError, AttributeError):
        return False
    return any(a.endswith(("ForSequenceClassification", "ForAudioClassification")) for a in archs)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise EncoderError(f"model {str(folder)!r}: no safetensors weights for its classification head")
    found: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), "pt") as st:
            for k in st.keys():
                if k in HEAD_KEYS:
                    found[k] = st.get_tensor(k)
    missing = [k for k in HEAD_KEYS if k not in found]
    if missing:
        raise EncoderError(f"model {str(folder)!r}: classification head weights missing: {', '.join(missing)}")
    return found


def load_own_head(path: str | os.PathLike) -> tuple[ClassifierHead, list[str]] | None:
    """The checkpoint's own head and class names (in class-id order), or None if it has none.

    Raises:
        EncoderError: the head exists but is not the paper's form (weighted layer sum,
            Whisper), or its weights are missing.
    """
    folder = Path(path)
    if not has_own_head(folder):
        return None
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("model_type") == "whisper":
        raise EncoderError(f"model {str(folder)!r}: Whisper's own classification head is not supported; "
                           "pass --no-own-head to train the paper's head instead")
    if cfg.get("use_weighted_layer_sum"):
        raise EncoderError(f"model {str(folder)!r}: its head reads a weighted sum of all layers "
                           "(use_weighted_layer_sum), which layer deletion changes; pass --no-own-head")
    w = _weights(folder)
    proj, cls = w["projector.weight"], w["classifier.weight"]  # (P, D), (C, P)
    head = ClassifierHead(proj.shape[1], cls.shape[0], proj.shape[0])
    head.load_state_dict(w)
    head.eval()
    id2label = cfg.get("id2label") or {}
    names = [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(cls.shape[0])]
    return head, names


def restrict_head(head: ClassifierHead, names: list[str], wanted: list[str]) -> ClassifierHead:
    """A copy of `head` whose classes are `wanted` (a subset of its `names`), in that order.

    Raises:
        EncoderError: a wanted class is not among the head's classes.
    """
    missing = [c for c in wanted if c not in names]
    if missing:
        raise EncoderError(f"the model's own head has no class {missing[0]!r} (it knows: "
                           f"{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}); "
                           "pass --no-own-head to train a head on the data")
    rows = torch.tensor([names.index(c) for c in wanted])
    out = ClassifierHead(head.hidden_size, len(wanted), head.proj_size)
    with torch.no_grad():
        out.projector.load_state_dict(head.projector.state_dict())
        out.classifier.weight.copy_(head.classifier.weight[rows])
        out.classifier.bias.copy_(head.classifier.bias[rows])
    out.eval()
    return out
