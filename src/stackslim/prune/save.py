"""The pruned model on disk: a plain Hugging Face folder plus the head.

    DIR/model/config.json, model.safetensors, ...   `enc.without_layers(deleted).save(...)`:
                                                    plain `transformers` reads it as is
    DIR/model/head.safetensors                      projector.{weight,bias}, classifier.{weight,bias}
    DIR/model/head.json                             head shape, class names, deleted layers, task
    DIR/model/pruned.json                           instead of the head with --task asr (the model's
                                                    own decoder transcribes): deleted layers, WER

Loading with plain libraries (no stackslim):

    model = AutoModel.from_pretrained(DIR/model)    # WhisperForConditionalGeneration for Whisper
    w = safetensors.torch.load_file(DIR/model/head.safetensors)
    logits = (h @ w["projector.weight"].T + w["projector.bias"]).mean(frames) @ w["classifier.weight"].T + ...
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors.torch import load_file, save_file

from ..heads import ClassifierHead
from ..models import Encoder, load_encoder
from ..models.base import read_meta
from ..results import write_atomic, writing
from .config import PruneError

HEAD_WEIGHTS = "head.safetensors"
HEAD_CONFIG = "head.json"
PRUNED_INFO = "pruned.json"  # a pruned model without a head (--task asr)


def save_head(head: ClassifierHead, folder: str | os.PathLike, meta: dict[str, Any] | None = None) -> None:
    """Write `head.safetensors` and `head.json` (shape + `meta`) into `folder`."""
    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
    with writing(folder / HEAD_WEIGHTS):  # disk full, permissions: OutputError naming the file
        fd, tmp = tempfile.mkstemp(prefix=f".{HEAD_WEIGHTS}.", dir=folder)
        os.close(fd)
        try:
            save_file(tensors, tmp)
            os.replace(tmp, folder / HEAD_WEIGHTS)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    write_atomic(folder / HEAD_CONFIG, json.dumps({**head.config(), **(meta or {})}, indent=2) + "\n")


def load_head(folder: str | os.PathLike) -> tuple[ClassifierHead, dict[str, Any]]:
    """The head saved by `save_head` and its JSON (class names, deleted layers, ...)."""
    folder = Path(folder)
    if not (folder / HEAD_CONFIG).is_file() or not (folder / HEAD_WEIGHTS).is_file():
        raise PruneError(f"{folder}: no {HEAD_CONFIG} and {HEAD_WEIGHTS}: not a pruned model with its head")
    meta = read_meta(folder / HEAD_CONFIG)
    head = ClassifierHead(int(meta["hidden_size"]), int(meta["num_classes"]), int(meta["proj_size"]))
    head.load_state_dict(load_file(str(folder / HEAD_WEIGHTS)))
    head.eval()
    return head, meta


def save_pruned(enc: Encoder, deleted: Sequence[int], head: ClassifierHead | None, path: str | os.PathLike,
                meta: dict[str, Any] | None = None, small: Encoder | None = None) -> Path:
    """Write `enc` without the 0-based layers `deleted`, and `head`, as one folder (atomically).

    With `head` None (--task asr: a Whisper model keeps its own decoder) `meta` goes into
    pruned.json instead. `meta` goes into head.json (e.g. class names, task); the deleted layers are added there in
    1-based numbering (`deleted_layers`) beside the 0-based indices (`deleted_indices`).
    `small`: the pruned encoder to write when its kept layers were trained after the deletion
    (default: `enc.without_layers(deleted)`).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PruneError(f"output {str(path)!r} exists and is not a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    if small is None:
        small = enc.without_layers(list(deleted)) if len(deleted) else enc
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        small.save(work / "model")
        info = {"deleted_indices": sorted(int(d) for d in deleted),
                "deleted_layers": sorted(int(d) + 1 for d in deleted),
                "original_num_layers": enc.num_layers, "num_layers": small.num_layers,
                "family": enc.family, **(meta or {})}
        if head is None:
            write_atomic(work / "model" / PRUNED_INFO, json.dumps(info, indent=2) + "\n")
        else:
            save_head(head, work / "model", info)
        _public(work / "model")
        if path.exists():
            shutil.rmtree(path)
        os.replace(work / "model", path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def _public(folder: Path) -> None:
    """Temporary folders and files are private (0700/0600): give the result the usual modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        if f.is_file():
            f.chmod(0o666 & ~umask)


def load_pruned(path: str | os.PathLike) -> tuple[Encoder, ClassifierHead]:
    """The pruned encoder (behind the `Encoder` interface) and its head."""
    head, _ = load_head(path)
    enc = load_encoder(path)
    return enc, head


@torch.no_grad()
def classify(enc: Encoder, head: ClassifierHead, waves: Sequence) -> torch.Tensor:
    """(B, C) logits of a batch of 16 kHz clips through a (pruned) encoder and its head."""
    h, n = enc.encode(waves)
    return head(h, n)
