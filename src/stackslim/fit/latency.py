"""A latency model measured once per run on this machine, and each candidate's prediction.

On one 1 s probe clip at batch 1 (PyTorch, CPU, the process's threads), timed with
`evaluate.latency.measure_latency` (median of repeats after warm-up):

    front_ms        the front end (features, positions)
    layer_ms[i]     teacher layer i on the front end's output
    rest_ms         the whole teacher minus the parts above (final norm, bookkeeping; >= 0)
    mimic_ms[z]     a mimic layer of width z

A candidate's prediction sums its parts. A shared layer runs its shared matrix (as many
multiply-adds as the dense layer) plus its low-rank factors, so it is predicted as the dense
layer's time scaled by its matrix elements: layer_ms · (E_dense + E_lowrank) / E_dense, with
E_lowrank the candidate's low-rank parameters spread evenly over its layers. int8 candidates are
predicted (and measured) in float PyTorch: the int8 runtime's own speed is not modelled.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..evaluate.latency import measure_latency
from ..mimic.layers import LinearMimic
from ..models.base import Encoder
from .predict import Account, Candidate


def probe_clip(seed: int = 0) -> np.ndarray:
    """1 s of 16 kHz noise: the clip every latency is measured on."""
    return (0.1 * np.random.default_rng(seed).standard_normal(16000)).astype(np.float32)


def time_ms(fn, repeats: int = 5) -> float:
    """Median milliseconds of `fn()` (inference mode)."""
    with torch.inference_mode():
        return float(measure_latency(lambda _: fn(), None, warmup=1, repeats=repeats)["median_ms"])


@dataclass
class LatencyModel:
    front_ms: float
    layer_ms: list[float]
    rest_ms: float
    mimic_ms: dict[int, float]
    teacher_ms: float
    threads: int = field(default_factory=torch.get_num_threads)

    @classmethod
    def measure(cls, enc: Encoder, widths: list[int], repeats: int = 5) -> "LatencyModel":
        wave = probe_clip()
        enc.eval()
        front = time_ms(lambda: enc.front_end([wave]), repeats)
        with torch.inference_mode():
            x0, n = enc.front_end([wave])
            ctx = enc.stack_context(x0, n)
        layers = [time_ms(lambda i=i: enc.run_layer(i, x0, ctx), repeats) for i in range(enc.num_layers)]
        total = time_ms(lambda: enc.hidden_states([wave]), repeats)
        mimic = {}
        for z in widths:
            torch.manual_seed(0)
            m = LinearMimic(enc.hidden_size, z).eval()
            mimic[z] = time_ms(lambda m=m: m(x0, n), repeats)
        return cls(front, layers, max(0.0, total - front - sum(layers)), mimic, total)

    def predict(self, c: Candidate, account: Account) -> float:
        if c.method == "mimic":
            return self.front_ms + self.mimic_ms[c.width]
        kept = [i for i in range(len(self.layer_ms)) if i not in set(c.deleted)]
        ms = sum(self.layer_ms[i] for i in kept)
        if c.method == "share":
            pred = account.predict(c.composition)
            dense2 = sum(account.layers[i][1] for i in kept)
            # the shared matrices cost as much as the dense ones; the low-rank part is extra
            low_rank = pred.low_rank if pred is not None else 0
            ms *= (dense2 + low_rank) / max(1, dense2)
        return self.front_ms + ms + self.rest_ms

    def to_json(self) -> dict:
        return {**asdict(self), "mimic_ms": {str(k): v for k, v in self.mimic_ms.items()},
                "probe": "1 s clip, batch 1, PyTorch float32 on the CPU, median ms"}
