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
        return F.rms_norm(x, (x.shape[-1],), self.weight.to(x.dtype), self.eps)  # one dtype: the fused kernel under autocast


class MLP(nn.Module):
    """Two-layer GELU (tanh form) MLP, width d * mult."""

    def __init__(self, d: int, mult: float):
        super().__init__()
        hidden = max(1, int(d * mult))
        self.up = nn.Linear(d, hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down(F.gelu(self.up(x), approximate="tanh"))  # exact erf GELU is ~100x slower on small CPU tensors


def rotary_cos_sin(pos: torch.Tensor, dh: int, dtype: torch.dtype, base: float = 10000.0):
    """cos, sin [..., dh // 2] of the rotary angles pos * freq (pos [...] integer positions). Angles
    are formed in float64, then cast to the work dtype (fp64 for fp64 x, else fp32): bf16 angles at
    position 1000 are off by several radians' worth of rounding. Decode keeps them as tables
    indexed by position; the parallel forward computes them for arange(T)."""
    half = dh // 2
    work = torch.float64 if dtype == torch.float64 else torch.float32
    freq = base ** (-torch.arange(half, device=pos.device, dtype=torch.float64) / half)
    ang = (pos.to(torch.float64).unsqueeze(-1) * freq).to(work)
    return ang.cos(), ang.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs of channels of x [..., L, dh] by precomputed cos, sin broadcasting to [..., L, dh // 2];
    the rotation runs in the tables' dtype and is cast to x's dtype after it."""
    half = cos.shape[-1]
    x1, x2 = x[..., :half].to(cos.dtype), x[..., half : 2 * half].to(cos.dtype)
    rot = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)
    return torch.cat([rot, x[..., 2 * half :]], dim=-1) if x.shape[-1] % 2 else rot


def rotary(x: torch.Tensor, pos: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """Rotate pairs of channels of x [..., L, dh] by angle pos * freq; pos broadcasts to [..., L]."""
    return apply_rotary(x, *rotary_cos_sin(pos, x.shape[-1], x.dtype, base))


def entropy_nats(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(logits) over the last dim: [..., V] -> [...]."""
    logp = F.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)
