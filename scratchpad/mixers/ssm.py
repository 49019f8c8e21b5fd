"""Gated diagonal SSM with data-dependent per-channel decay.

    a_t = sigmoid(z_t + bias)          per channel, in (0, 1)
    h_t = a_t * h_{t-1} + (1 - a_t) * v_t
    y_t = W_out(h_t * silu(g_t))

Because y_t depends only on h_t, the scan's hidden states are all a scratchpad needs: a
transient step from committed position j is h = a * h_j + b, written nowhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from kernels import diagonal_scan, scratch_step


@dataclass
class SSMState:
    """Recurrent state per row: h [B, E]."""

    h: torch.Tensor

    def reset(self, slot: int):
        self.h[slot] = 0

    def tensors(self) -> list[torch.Tensor]:
        return [self.h]


class DiagonalSSM(nn.Module):
    def __init__(self, d: int, expand: int = 1):
        super().__init__()
        self.inner = d * expand
        self.in_proj = nn.Linear(d, 3 * self.inner, bias=False)
        self.out_proj = nn.Linear(self.inner, d, bias=False)
        # decay timescales spread log-uniformly over 2..512 steps at init
        tau = torch.exp(torch.linspace(math.log(2.0), math.log(512.0), self.inner))
        a0 = 1.0 - 1.0 / tau
        self.decay_bias = nn.Parameter(torch.log(a0 / (1 - a0)))

    def coefficients(self, x):
        """x [..., d] -> (a, b, gate), each [..., E]."""
        v, g, z = self.in_proj(x).chunk(3, dim=-1)
        work = torch.promote_types(z.dtype, torch.float32)  # a ~ 0.998 needs more than bf16's 8 bits
        a = torch.sigmoid(z.to(work) + self.decay_bias.to(work))
        return a, (1 - a) * v.to(work), g

    def output(self, h, g):
        """h in the scan's dtype (fp32 for bf16 weights), g in the layer's -> y in g's dtype."""
        return self.out_proj((h * F.silu(g.to(h.dtype))).to(g.dtype))

    def forward(self, x, reset=None):
        """x [B, T, d]; reset [B, T] bool zeroes the carried state before t.
        Returns (y [B, T, d], hidden states h [B, T, E]) -- h is the trace scratchpads read."""
        a, b, g = self.coefficients(x)
        if reset is not None:
            a = a.masked_fill(reset.unsqueeze(-1), 0.0)
        h, _ = diagonal_scan(a, b)
        return self.output(h, g), h

    def scratch(self, x, trace, parent):
        """Transient step. x [B, Q, d]; trace h [B, N, E]; parent [B, Q] index into N (-1: zero state)."""
        a, b, g = self.coefficients(x)
        if trace.shape[1] == 0:  # nothing committed yet anywhere in the batch
            prev = a.new_zeros(a.shape)
        else:
            idx = parent.clamp(min=0).unsqueeze(-1).expand(-1, -1, self.inner)
            prev = torch.gather(trace, 1, idx) * (parent >= 0).unsqueeze(-1).to(trace.dtype)
        return self.output(scratch_step(a, b, prev), g)

    def allocate(self, batch: int, capacity: int, device, dtype) -> SSMState:
        """The decode state is fp32 whatever the weights' dtype (fp64 stays fp64): with a ~ 0.998
        the increment (1 - a) * v is below bf16's resolution of h and would be lost."""
        state_dtype = torch.float64 if dtype == torch.float64 else torch.float32
        return SSMState(torch.zeros(batch, self.inner, device=device, dtype=state_dtype))

    def decode(self, x, state: SSMState, write=None, reset=None):
        """One step for every row: x [B, d] -> y [B, d]. The state advances where `write` [B] bool
        (None: every row); elsewhere the step is transient and writes nothing. reset [B] bool starts
        those rows from a zero state. No gathers, no host sync."""
        a, b, g = self.coefficients(x)
        if reset is not None:
            a = a.masked_fill(reset.unsqueeze(-1), 0.0)
        h = scratch_step(a, b, state.h.to(b.dtype))
        if write is None:
            state.h.copy_(h)
        else:
            state.h.copy_(torch.where(write.unsqueeze(-1), h, state.h))
        return self.output(h, g)

    def load(self, state: SSMState, trace, count: int, row: int):
        """Prefill hand-off for one row from a batch-1 trace: the state after `count` positions."""
        state.h[row] = trace[0, count - 1] if count > 0 else 0.0
