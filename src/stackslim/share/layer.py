"""The ResidualTransformer linear map (Wang & Li, ICASSP 2024, arXiv 2310.02489).

    y = x W_sharedᵀ + (x Bᵀ) Aᵀ + x ⊙ d + b

    W_shared  (d_out, d_in)   one tensor for a group of adjacent layers (the same nn.Parameter
                              object in every layer of the group: counted and stepped once)
    A         (d_out, r)      the layer's own low-rank factors, r = rank
    B         (r, d_in)
    d         (k,)            the layer's own diagonal, k = min(d_in, d_out); it touches the
                              first k outputs with the first k inputs: y[:k] += x[:k] ⊙ d
    b         (d_out,)        bias: the layer's own, or one for the group (share_norms)

As one dense matrix: W_l = W_shared + A B + diag_k(d), with diag_k(d) the (d_out, d_in) matrix
holding d on its main diagonal. `weight` returns that matrix, so code that reads
`linear.weight` directly (e.g. WavLM's attention calls F.multi_head_attention_forward with
`q_proj.weight`) keeps working and stays differentiable.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ResidualLinear(nn.Module):
    """Shared weight + per-layer low-rank residual + per-layer diagonal + bias.

    Args:
        shared: the group's W_shared (d_out, d_in), an nn.Parameter that other layers hold too.
        rank: r >= 0, rank of the layer's own residual A B.
        diag: whether the layer has its own diagonal d.
        bias: the bias Parameter (d_out,) (the layer's own or the group's), or None.
    """

    def __init__(self, shared: nn.Parameter, rank: int, diag: bool = True,
                 bias: nn.Parameter | None = None):
        super().__init__()
        d_out, d_in = shared.shape
        if rank < 0:
            raise ValueError(f"rank must be >= 0, got {rank}")
        self.in_features, self.out_features, self.rank = d_in, d_out, int(rank)
        kw = dict(dtype=shared.dtype, device=shared.device)
        self.shared = shared  # (d_out, d_in), one object per group
        self.A = nn.Parameter(torch.zeros(d_out, rank, **kw))  # (d_out, r)
        self.B = nn.Parameter(torch.zeros(rank, d_in, **kw))  # (r, d_in)
        # (k,) the layer's diagonal, k = min(d_in, d_out); None when off
        self.register_parameter("d", nn.Parameter(torch.zeros(min(d_in, d_out), **kw)) if diag else None)
        self.register_parameter("bias", bias)  # (d_out,) or None

    @property
    def has_diag(self) -> bool:
        return self.d is not None

    def residual_weight(self) -> torch.Tensor:
        """(d_out, d_in) A B + diag_k(d): what this layer adds to the shared weight."""
        R = self.A @ self.B  # (d_out, d_in)
        if self.d is not None:
            k = self.d.shape[0]
            eye = torch.eye(self.out_features, self.in_features, dtype=R.dtype, device=R.device)
            R = R + eye * F.pad(self.d, (0, self.in_features - k))  # diag_k(d); exports to ONNX
        return R

    @property
    def weight(self) -> torch.Tensor:
        """(d_out, d_in) the dense matrix W_shared + A B + diag_k(d)."""
        return self.shared + self.residual_weight()

    #: how inference runs: "fused" (in-place accumulation into one output buffer, see
    #: `_forward_fused`), "small-first" (the same terms, the large product last: see
    #: `_forward_small_first`) or "plain" (three separate products and sums); chosen by
    #: bench/shared_forward.py, which measures each beside the dense layer
    impl: str = "fused"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., d_in) → (..., d_out).

        Inference (and small training batches) runs factored, never building the dense matrix.
        In training, once a batch holds more rows than d_in·d_out / (d_in + d_out), building
        W_l (cost r·d_in·d_out) and applying it once is cheaper than the factored path (cost
        rows·r·(d_in + d_out) on top of the shared product): same function, same gradients.
        """
        rows = x.numel() // self.in_features
        if self.training and rows * (self.in_features + self.out_features) > self.in_features * self.out_features:
            return F.linear(x, self.weight, self.bias)
        if (self.impl != "plain" and not torch.is_grad_enabled() and not torch.jit.is_tracing()
                and x.dtype == self.shared.dtype):
            return self._forward_small_first(x) if self.impl == "small-first" else self._forward_fused(x)
        y = F.linear(x, self.shared, self.bias)  # (..., d_out)
        if self.rank > 0:
            y = y + F.linear(F.linear(x, self.B), self.A)  # (..., r) → (..., d_out)
        if self.d is not None:
            k = self.d.shape[0]
            xd = x[..., :k] * self.d  # (..., k)
            if k < self.out_features:
                xd = F.pad(xd, (0, self.out_features - k))  # (..., d_out)
            y = y + xd
        return y

    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        """Inference form: one output buffer, every term accumulated into it in place.

            Y = addmm(b, X, W_sharedᵀ)          (n, d_out)   one BLAS call with the bias
            Y += (X Bᵀ) Aᵀ                      addmm_ into Y, (n, r) in between
            Y[:, :k] += X[:, :k] ⊙ d            addcmul_, no padded copy

        Nothing of size d_out × d_in is built (no per-layer copy of W_shared), and no
        temporary of the output's size is allocated or summed, as the plain form does three
        times. X is x viewed as (n, d_in), n = all leading dimensions.
        """
        shape = x.shape[:-1]
        X = x.reshape(-1, self.in_features)  # (n, d_in)
        if self.bias is not None:
            Y = torch.addmm(self.bias, X, self.shared.t())  # (n, d_out)
        else:
            Y = X @ self.shared.t()
        if self.rank > 0:
            Y.addmm_(X @ self.B.t(), self.A.t())  # (n, r) @ (r, d_out)
        if self.d is not None:
            k = self.d.shape[0]
            Y[:, :k].addcmul_(X[:, :k], self.d)
        return Y.view(*shape, self.out_features)

    def _forward_small_first(self, x: torch.Tensor) -> torch.Tensor:
        """Inference form with the large product last, accumulating onto the small terms:

            Y = addmm(b, X Bᵀ, Aᵀ)              (n, d_out)   bias + low-rank, (n, r) between
            Y[:, :k] += X[:, :k] ⊙ d            addcmul_
            Y += X W_sharedᵀ                    addmm_, beta = 1: the GEMM reads Y as it writes

        The passes over Y that the cheap terms need happen before the GEMM, which reads its
        accumulator block by block, instead of after it (`_forward_fused`), when Y has left
        the cache.
        """
        shape = x.shape[:-1]
        X = x.reshape(-1, self.in_features)  # (n, d_in)
        if self.rank > 0:
            low = X @ self.B.t()  # (n, r)
            Y = torch.addmm(self.bias, low, self.A.t()) if self.bias is not None else low @ self.A.t()
        else:
            Y = (self.bias.expand(X.shape[0], -1).clone() if self.bias is not None else
                 X.new_zeros(X.shape[0], self.out_features))
        if self.d is not None:
            k = self.d.shape[0]
            Y[:, :k].addcmul_(X[:, :k], self.d)
        return Y.addmm_(X, self.shared.t()).view(*shape, self.out_features)

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear computing the same map (fresh tensors, nothing shared)."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                        dtype=self.shared.dtype, device=self.shared.device)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"rank={self.rank}, diag={self.has_diag}, bias={self.bias is not None}")
