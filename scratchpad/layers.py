"""Small shared layers: RMSNorm, MLP, rotary embedding, entropy."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)  # one dtype: the fused kernel


class MLP(nn.Module):
    """Two-layer GELU (tanh form) MLP, width d * mult."""

    def __init__(self, d: int, mult: float):
        super().__init__()
        hidden = max(1, int(d * mult))
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x), approximate="tanh"))  # exact erf GELU is ~100x slower on small CPU tensors


def rotary(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs of channels of x [..., L, dh] by angle pos * freq; pos broadcasts to [..., L].
    The angles, their cos/sin and the rotation are computed in fp32 (fp64 for fp64 x) and cast to
    x's dtype after the rotation: bf16 angles at position 1000 are off by several radians' worth
    of rounding, bf16 cos/sin of exact angles only by bf16's own rounding."""
    dh = x.shape[-1]
    half = dh // 2
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    ang = (pos.to(torch.float64).unsqueeze(-1) * freq).to(work)
    cos, sin = ang.cos(), ang.sin()
    x1, x2 = x[..., :half].to(work), x[..., half : 2 * half].to(work)
    rot = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)
    return torch.cat([rot, x[..., 2 * half :]], dim=-1) if dh % 2 else rot


def entropy_nats(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(logits) over the last dim: [..., V] -> [...]."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
