"""Helpers for the export tests (imported as `exporthelpers`)."""
from __future__ import annotations

import torch


def make_folder(kind: str, family: str, root):
    """Write a folder of `kind` (pruned, shared, mimic-linear, mimic-transformer) of a tiny
    random `family` model under `root`; returns its path."""
    from stackslim.heads import ClassifierHead
    from stackslim.mimic import MimicModel
    from stackslim.models import load_encoder
    from stackslim.prune import save_pruned
    from stackslim.share import to_residual

    enc = load_encoder(f"random:{family}")
    torch.manual_seed(0)
    head = ClassifierHead(enc.hidden_size, 3, proj_size=8)
    path = root / f"{kind}-{family}"
    if kind == "pruned":
        save_pruned(enc, [0, 2] if family == "wavlm" else [1], head, path)
    elif kind == "shared":
        to_residual(enc, groups=2, rank=4, share_norms=family == "hubert").save(path)
    else:
        layer = kind.split("-")[1]
        MimicModel.from_teacher(enc, head, layer, 2 if layer == "linear" else 1, 32,
                                positions=layer == "transformer").save(path)
    return path
