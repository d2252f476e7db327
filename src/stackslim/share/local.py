"""Layer-wise reconstruction: fit each group of a compressed stack to its teacher layers.

End-to-end recovery runs the whole student (and, for transcription, the frozen decoder) for
every step. Fitting one group at a time needs only that group's layers per step, on cached
teacher states, so many more epochs fit in the same compute. For a group of adjacent layers
a..b (those that hold the same W_shared) and cached teacher states t_0..t_L:

    x_a = t_a                      (``parallel``: the teacher's input)
        = s_a                      (``sequential``: the student's own output of layer a−1,
                                    after the earlier groups were fitted, so that errors do
                                    not compound unseen)
    s_{i+1} = layer_i(s_i),  i = a..b        (the student's layers, chained inside the group)

    L_group = (1 / |g|) Σ_{i=a..b}  Σ_valid ‖s_{i+1} − t_{i+1}‖² / Σ_valid ‖t_{i+1}‖²

with the family's final norm applied to the last layer's output (the cached t_L is taken
after it, as the decoder and heads read it). Every parameter of the group's layers is fitted
(W_shared, A, B, d, biases, norms) with `stackslim.train.train`; the budget is counted in
epochs (a clock only as an optional cap). Sequential mode then runs the fitted group once over
every clip to get the next group's inputs.

`layer_errors` measures, per layer, the normalised error of its output from the teacher's input
(``local``) and from state 0 through the student's own stack (``chained``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from torch import nn

from ..models.base import Encoder, EncoderError
from ..models.cache import StateCache, pad_frames
from ..train import TrainConfig, train
from .recover import length_groups

MODES = ("sequential", "parallel")


@dataclass
class LocalLog:
    """What `fit_local` did, per group: layers, epochs run, seconds, loss before and after."""

    mode: str
    groups: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict:
        return {"mode": self.mode, "groups": self.groups, "seconds": self.seconds}


def _contiguous_groups(student: Encoder) -> list[list[int]]:
    groups = getattr(student, "groups", None) or [[i] for i in range(student.num_layers)]
    groups = sorted((sorted(g) for g in groups), key=lambda g: g[0])
    for g in groups:
        if g != list(range(g[0], g[-1] + 1)):
            raise EncoderError(f"layer-wise fitting needs groups of adjacent layers, got {g}")
    return groups


def _valid(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, 1) 1.0 on the valid frames of the padded batch x (B, T, D), 0.0 on padding."""
    return (torch.arange(x.shape[1], device=x.device)[None] < lengths.to(x.device)[:, None]
            ).unsqueeze(-1).to(x.dtype)


def _group_out(student: Encoder, i: int, h: torch.Tensor) -> torch.Tensor:
    """Layer i's output as the cache holds it: after the final norm for the last layer."""
    norm = student.final_norm_module
    return norm(h) if norm is not None and i == student.num_layers - 1 else h


def group_loss(student: Encoder, inputs: Sequence[torch.Tensor], cache: StateCache,
               rows: Sequence[int], members: Sequence[int],
               targets: Sequence[int] | None = None) -> torch.Tensor:
    """L_group of the module docstring on cache rows `rows`; `inputs[r]` (T_r, D) is row r's
    input of the group's first layer; `targets[i]` the cached teacher state that layer i's
    output matches (default i + 1). Rows run in groups of similar length; sums before ratios."""
    num = [0.0] * len(members)
    den = [0.0] * len(members)
    for grp in length_groups(cache.lengths, rows):
        x = pad_frames([inputs[r] for r in grp])  # (B, T, D)
        n = cache.lengths[list(grp)]
        ctx = student.stack_context(x, n)
        mask = _valid(x, n)
        h = x
        for j, i in enumerate(members):
            h = student.run_layer(i, h, ctx)
            t, _ = cache.batch(targets[i] if targets is not None else i + 1, grp)  # (B, T, D)
            out = _group_out(student, i, h)
            num[j] = num[j] + (((out - t) ** 2) * mask).sum()
            den[j] = den[j] + ((t ** 2) * mask).sum()
    return sum(a / torch.as_tensor(b).clamp_min(1e-12) for a, b in zip(num, den)) / len(members)


@torch.no_grad()
def run_group(student: Encoder, inputs: Sequence[torch.Tensor], lengths: torch.Tensor,
              members: Sequence[int], batch_size: int = 16) -> list[torch.Tensor]:
    """The group's raw output (no final norm) for every clip: the next group's inputs."""
    out: list[torch.Tensor] = []
    order = list(range(len(inputs)))
    for s in range(0, len(order), batch_size):
        rows = order[s : s + batch_size]
        x = pad_frames([inputs[r] for r in rows])
        n = lengths[rows]
        ctx = student.stack_context(x, n)
        for i in members:
            x = student.run_layer(i, x, ctx)
        out += [x[b, : int(n[b])].clone() for b in range(len(rows))]
    return out


def fit_local(student: Encoder, cache: StateCache, cfg: TrainConfig, mode: str = "sequential",
              progress: bool = True, targets: Sequence[int] | None = None) -> LocalLog:
    """Fit every group of `student` to its teacher layers (in place; module docstring).

    Args:
        student: a compressed encoder (a `SharedEncoder`: its groups are read from the tensors;
            any other encoder: each layer alone).
        cache: teacher states 0..L of the fitting clips (`recover.distill_cache`, states="all").
        cfg: epochs, lr, batch_size, seed, weight_decay, schedule of every group's fit;
            `max_minutes` caps the whole fit (split evenly over the groups).
        mode: "sequential" (student inputs) or "parallel" (teacher inputs).
        targets: for each student layer i, the teacher state its output matches (default
            i + 1; a pruned stack keeps a subset of the teacher's layers: e.g. [1, 2, 4, 5, 6]
            after deleting layer 3 of 6). Parallel inputs are then the previous layer's target.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    L = student.num_layers
    targets = list(targets) if targets is not None else list(range(1, L + 1))
    if len(targets) != L:
        raise ValueError(f"targets must give one teacher state per layer ({L}), got {len(targets)}")
    missing = [i for i in sorted({0, *targets}) if i not in cache.states]
    if missing:
        raise ValueError(f"layer-wise fitting needs every teacher state; the cache lacks {missing}")
    groups = _contiguous_groups(student)
    t0 = time.monotonic()
    log = LocalLog(mode)
    inputs: list[torch.Tensor] = list(cache.states[0])  # the student's state a, per clip
    per_group = replace(cfg, max_minutes=cfg.max_minutes / len(groups)) if cfg.max_minutes > 0 else cfg
    rows_all = list(range(len(cache)))
    for members in groups:
        first = members[0]
        src = inputs if mode == "sequential" else cache.states[targets[first - 1] if first else 0]
        module = nn.ModuleList([student.layers[i] for i in members])
        g0 = time.monotonic()
        with torch.no_grad():
            before = float(group_loss(student, src, cache, rows_all[:64], members, targets))
        tl = train(module, len(cache),
                   lambda rows: group_loss(student, src, cache, rows, members, targets),
                   per_group, desc=f"local fit: layers {members[0] + 1}-{members[-1] + 1}",
                   progress=progress)
        student.eval()
        with torch.no_grad():
            after = float(group_loss(student, src, cache, rows_all[:64], members, targets))
        log.groups.append({"layers": members, "epochs": tl.epochs_run, "seconds": time.monotonic() - g0,
                           "stopped_by": tl.stopped_by, "loss_before": before, "loss_after": after})
        if mode == "sequential" and members[-1] < L - 1:
            inputs = run_group(student, inputs, cache.lengths, members)
    log.seconds = time.monotonic() - t0
    return log


@torch.no_grad()
def layer_errors(student: Encoder, cache: StateCache, batch_size: int = 16) -> list[dict]:
    """Per layer i (0-based): the normalised squared error of its output against the teacher's
    state i+1, from the teacher's input (``local``) and through the student's stack from
    state 0 (``chained``): Σ‖s − t‖² / Σ‖t‖² over the valid frames of every clip of `cache`."""
    L = student.num_layers
    loc = [[0.0, 0.0] for _ in range(L)]
    chn = [[0.0, 0.0] for _ in range(L)]
    student.eval()
    for s in range(0, len(cache), batch_size):
        rows = list(range(s, min(s + batch_size, len(cache))))
        x0, n = cache.batch(0, rows)
        ctx = student.stack_context(x0, n)
        mask = _valid(x0, n)
        h = x0
        for i in range(L):
            t_in, _ = cache.batch(i, rows)
            t, _ = cache.batch(i + 1, rows)
            h = student.run_layer(i, h, ctx)
            one = _group_out(student, i, student.run_layer(i, t_in, ctx))
            den = float(((t ** 2) * mask).sum())
            loc[i][0] += float((((one - t) ** 2) * mask).sum())
            chn[i][0] += float((((_group_out(student, i, h) - t) ** 2) * mask).sum())
            loc[i][1] += den
            chn[i][1] += den
    return [{"layer": i, "local": loc[i][0] / max(loc[i][1], 1e-12),
             "chained": chn[i][0] / max(chn[i][1], 1e-12)} for i in range(L)]
