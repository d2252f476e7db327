"""`models.compact.fill_meta` (used by the compact loaders of shared and mimic folders): the
parts of a model that were not stored become zeros that take no resident memory."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from stackslim.models.compact import fill_meta


def _anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon")


def test_fill_meta_gives_zeros_keeps_aliases_and_touches_no_memory():
    with torch.device("meta"):
        m = nn.Sequential(*[nn.Linear(512, 1024) for _ in range(16)])  # 16 x 2 MiB weights
        m.register_buffer("steps", torch.empty(3, dtype=torch.long))
    m[1].weight = m[0].weight  # one Parameter under two names stays one
    # heap memory freed just before (2 MiB blocks): a calloc serving from it must clear it
    junk = [np.ones(1 << 19, np.float32) for _ in range(16)]
    del junk
    before = _anon_mib()
    filled = fill_meta(m)
    grown = _anon_mib() - before
    assert grown < 0.5, f"{grown:.2f} MiB resident for zeros nothing wrote"
    assert len(filled) == 16 * 2 + 1
    assert m[0].weight is m[1].weight and isinstance(m[0].weight, nn.Parameter)
    assert all(t.device.type == "cpu" and not t.any() for t in m.state_dict().values())
    assert m.steps.dtype == torch.long and m[3].bias.shape == (1024,)
    with torch.no_grad():  # writable, and each tensor its own memory
        m[2].weight.fill_(1.0)
    assert not m[3].weight.any() and not m[2].bias.any()
    assert fill_meta(m) == []
