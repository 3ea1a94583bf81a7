"""SVD-residual tuning of a linear layer (the idea of Effort, ICML'25): keep a pretrained weight's
principal singular subspace frozen and train only its smallest singular components.

    W = U diag(S) V^T                          (computed in float64, singular values descending)
    weight_main = U[:, :m-k] diag(S[:m-k]) V[:m-k]           frozen buffer (m = min(out, in))
    U_res (out, k), S_res (k), V_res (k, in) = the k smallest   trainable parameters
    forward: x @ (weight_main + U_res diag(S_res) V_res)^T + bias    (bias frozen)

Before any training the effective weight equals W up to float32 rounding (tests check
max |W_eff - W| <= 1e-6 * max |W|).

`regularization_loss()`: keep [U_main | U_res] with orthonormal columns and [V_main; V_res] with
orthonormal rows, measured through the residual alone (U_main / V_main are never stored):
    ||U_res^T U_res - I||^2 + ||(I - U0 U0^T)(U_res - U0)||^2   (+ the same for V_res rows)
U0, V0 are the residual's starting values (small frozen buffers). [U_main | U0] is orthonormal, so the
overlap with the main subspace, U_main^T U_res = U_main^T (I - U0 U0^T)(U_res - U0), is bounded by the
second term (equal to it when W has full column space, e.g. V of a square or wide layer).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

_SKIP_SVD = False


@contextlib.contextmanager
def skip_svd():
    """Build SVD-residual layers with the right shapes but no decomposition, for a model whose saved
    weights are loaded right after (the split of a ViT-B takes a minute or more on a CPU)."""
    global _SKIP_SVD
    before, _SKIP_SVD = _SKIP_SVD, True
    try:
        yield
    finally:
        _SKIP_SVD = before


class SVDResidualLinear(nn.Module):
    def __init__(self, linear: nn.Linear, rank: int = 1):
        super().__init__()
        out_features, in_features = linear.weight.shape
        m = min(out_features, in_features)
        if not 1 <= rank <= m:
            raise ValueError(f"svd_residual_rank must be between 1 and {m} for a {out_features}x{in_features} layer, got {rank}")
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        w = linear.weight.detach()
        dtype = w.dtype
        keep = m - rank
        if _SKIP_SVD:  # placeholders of the right shapes: the caller loads saved weights next
            u, s, vh = w.new_zeros(out_features, m), w.new_zeros(m), w.new_zeros(m, in_features)
            main = torch.zeros_like(w)
        else:
            u, s, vh = torch.linalg.svd(w.double(), full_matrices=False)
            main = (u[:, :keep] * s[:keep]) @ vh[:keep]
        self.register_buffer("weight_main", main.to(dtype).contiguous())
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())
        self.U_res = nn.Parameter(u[:, keep:].to(dtype).contiguous())
        self.S_res = nn.Parameter(s[keep:].to(dtype).contiguous())
        self.V_res = nn.Parameter(vh[keep:].to(dtype).contiguous())
        self.register_buffer("U_init", self.U_res.detach().clone())
        self.register_buffer("V_init", self.V_res.detach().clone())

    def residual_weight(self) -> torch.Tensor:
        return (self.U_res * self.S_res) @ self.V_res

    def effective_weight(self) -> torch.Tensor:
        return self.weight_main + self.residual_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def regularization_loss(self) -> torch.Tensor:
        eye = torch.eye(self.rank, device=self.U_res.device, dtype=self.U_res.dtype)
        u, v, u0, v0 = self.U_res, self.V_res, self.U_init, self.V_init
        du, dv = u - u0, v - v0
        leak_u = du - u0 @ (u0.T @ du)  # deviation outside the starting residual span
        leak_v = dv - (dv @ v0.T) @ v0
        return (
            (u.T @ u - eye).square().sum() + leak_u.square().sum()
            + (v @ v.T - eye).square().sum() + leak_v.square().sum()
        )

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"


def split_linears(root: nn.Module, rank: int, inside: str = "blocks") -> int:
    """Replace every nn.Linear under a module path containing `inside` (a transformer's blocks) by an
    SVDResidualLinear; returns how many were replaced."""
    targets = [
        name for name, mod in root.named_modules()
        if isinstance(mod, nn.Linear) and inside in name.split(".")[:-1]
    ]
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, child, SVDResidualLinear(getattr(parent, child), rank))
    return len(targets)


def svd_regularization(model: nn.Module) -> torch.Tensor | None:
    """Sum of `regularization_loss()` over the model's SVD-residual layers (None when it has none)."""
    losses = [m.regularization_loss() for m in model.modules() if isinstance(m, SVDResidualLinear)]
    return torch.stack(losses).sum() if losses else None
