"""Candidates and their encoder bytes, predicted from the teacher before anything is built.

A candidate composes, in this order: delete `deleted` layers (0-based, the best order first),
then either keep the rest dense ("prune"), share it at a size fraction ("share":
`share.to_residual(size=s)`), or replace the whole stack by one mimic layer of width z
("mimic"); then store the stack's matrices in float32 or int8.

Bytes count the encoder's stored tensors (front end, stack, final norm; a shared tensor once;
not the head, not a Whisper decoder), as `int8.encoder_tensors` writes them:

    float:  4 · P
    int8:   4 · P1  +  P2  +  4 · R2

with P all parameters, P2 the elements of the stack's 2-D matrices (stored int8), P1 = P − P2,
and R2 their rows (one float32 scale per row). For sharing, the stack's P is the budget
floor(s · P_dense) that `share.ranks.allocate_ranks` fills to within one rank unit (d_in +
d_out parameters), and its 1-D part (biases, norms, diagonals) does not depend on the ranks;
the rows of B (Σ r) are estimated as the low-rank parameters over the mean unit cost.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from torch import nn

from ..mimic.model import used_prefixes
from ..models.base import Encoder
from ..share.convert import layer_matrices
from ..share.ranks import fixed_params

METHODS = ("prune", "share", "mimic")


@dataclass(frozen=True)
class Candidate:
    """One composition: layers deleted, then the method on what is left, then the precision."""

    method: str  # prune | share | mimic
    deleted: tuple[int, ...] = ()  # 0-based layers deleted first (prune, share)
    size: float = 0.0  # share: the shared stack's parameters / the dense kept stack's
    width: int = 0  # mimic: hidden width z of its layer
    int8: bool = False

    @property
    def name(self) -> str:
        base = {"prune": f"prune-d{len(self.deleted)}",
                "share": f"prune-d{len(self.deleted)}+share-{self.size:g}",
                "mimic": f"mimic-z{self.width}"}[self.method]
        return base + ("+int8" if self.int8 else "")

    @property
    def composition(self) -> "Candidate":
        """The same candidate in float: what is trained (int8 is applied after training)."""
        return Candidate(self.method, self.deleted, self.size, self.width, False)

    def to_json(self) -> dict:
        return {"name": self.name, "method": self.method, "deleted_layers": [i + 1 for i in self.deleted],
                "size": self.size or None, "width": self.width or None,
                "precision": "int8" if self.int8 else "float32"}


@dataclass
class Predicted:
    """Predicted encoder bytes, and the parts of the account."""

    bytes: int
    params: int
    matrix_params: int  # P2: elements of the stack's 2-D matrices
    matrix_rows: int  # R2
    low_rank: int = 0  # share: parameters of the low-rank factors A, B


def _count(params: Sequence[nn.Parameter]) -> tuple[int, int, int]:
    """(elements, elements of 2-D tensors, rows of 2-D tensors)."""
    n = n2 = r2 = 0
    for p in params:
        n += p.numel()
        if p.dim() == 2 and p.numel():
            n2, r2 = n2 + p.numel(), r2 + p.shape[0]
    return n, n2, r2


def _bytes(params: int, p2: int, r2: int, int8: bool) -> int:
    return 4 * (params - p2) + p2 + 4 * r2 if int8 else 4 * params


class Account:
    """The teacher's parameters, split as the predictions need them."""

    def __init__(self, enc: Encoder, group: int = 3):
        self.enc, self.group = enc, group
        stack = {id(p) for p in enc.layers.parameters()}
        rest = [p for p in enc.encoder_module.parameters() if id(p) not in stack]
        self.rest = sum(p.numel() for p in rest)  # front end + positions + final norm
        self.layers = [_count(list(layer.parameters())) for layer in enc.layers]
        front = used_prefixes(enc, positions=False)  # what a mimic model keeps
        self.front = sum(p.numel() for k, p in enc.encoder_module.named_parameters()
                         if k.startswith(front))
        self.d = enc.hidden_size
        self.matrices = layer_matrices(enc.family, "all")

    def front_bytes(self) -> int:
        """The front end alone (what every mimic candidate keeps), float32."""
        return 4 * self.front

    def predict(self, c: Candidate) -> Predicted | None:
        """Predicted bytes of `c`, or None when it cannot be built (a share size below the
        grouping's fixed part)."""
        if c.method == "mimic":
            d, z = self.d, c.width
            n2, r2 = 2 * d * z, z + d  # fc1 (z, d), fc2 (d, z)
            n = self.front + n2 + z + 2 * z + d
            return Predicted(_bytes(n, n2, r2, c.int8), n, n2, r2)
        kept = [i for i in range(len(self.layers)) if i not in set(c.deleted)]
        if c.method == "prune":
            n = self.rest + sum(self.layers[i][0] for i in kept)
            n2 = sum(self.layers[i][1] for i in kept)
            r2 = sum(self.layers[i][2] for i in kept)
            return Predicted(_bytes(n, n2, r2, c.int8), n, n2, r2)
        return self._share(c, kept)

    def groups(self, kept: Sequence[int], k: int) -> list[list[int]]:
        """Adjacent runs of k of the kept layers, as `to_residual(groups=k)` makes them
        (indices into the pruned stack)."""
        m = len(kept)
        return [list(range(s, min(s + k, m))) for s in range(0, m, k)]

    def _share(self, c: Candidate, kept: list[int]) -> Predicted | None:
        layers = [self.enc.layers[i] for i in kept]
        part = self.groups(kept, self.group)
        dense = sum(self.layers[i][0] for i in kept)
        fixed = fixed_params(layers, part, self.matrices, True, False)
        budget = int(c.size * dense)
        if fixed > budget:
            return None
        # 2-D tensors of the layers that are not shared maps stay as they are
        other2 = sum(self.layers[i][1] for i in kept)
        other_rows = sum(self.layers[i][2] for i in kept)
        diag, shared2, shared_rows, a_rows, costs = 0, 0, 0, 0, []
        for members in part:
            for j, li in enumerate(members):
                for name in self.matrices:
                    d_out, d_in = layers[li].get_submodule(name).weight.shape
                    other2, other_rows = other2 - d_out * d_in, other_rows - d_out
                    diag += min(d_out, d_in)
                    a_rows += d_out
                    costs.append(d_out + d_in)
                    if j == 0:
                        shared2, shared_rows = shared2 + d_out * d_in, shared_rows + d_out
        low_rank = budget - fixed
        sum_r = round(low_rank / (sum(costs) / len(costs)))  # rows of B, estimated
        n = self.rest + budget
        n2 = shared2 + low_rank + other2
        r2 = shared_rows + other_rows + (a_rows + sum_r if low_rank else 0)
        return Predicted(_bytes(n, n2, r2, c.int8), n, n2, r2, low_rank)
