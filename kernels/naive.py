"""The reference of every kernel: each op as its plain recurrence, in fp64, slow and obviously right.

The chunked torch scan (kernels/scan_chunked.py), the torch step (kernels/step_torch.py) and the
Triton kernels (kernels/scan_triton.py with kernels/scan_carry.py, kernels/step_triton.py) are all
tested against these, forward and backward (autograd through the loop). Same signatures and output
dtypes as the public ops; no model or engine code calls them.

  diagonal_scan_naive(a, b, initial_state=None) -> (h, final_state)   one step per t: h_t = a_t h_{t-1} + b_t
  scratch_step_naive(a, b, states) -> a * states + b
"""
from __future__ import annotations

import torch

from kernels._validate import check_scan, check_scratch


def diagonal_scan_naive(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None):
    """a, b: [B, T, D]; initial_state: [B, D] | None (zeros). Computed in fp64, one position at a time.
    Returns (h [B, T, D] in b's dtype, final_state [B, D] in initial_state's dtype, or b's)."""
    a, b, initial_state = check_scan(a, b, initial_state)
    B, T, D = b.shape
    h = initial_state.double() if initial_state is not None else b.new_zeros(B, D, dtype=torch.float64)
    rows = []
    for t in range(T):
        h = a[:, t].double() * h + b[:, t].double()
        rows.append(h)
    hs = torch.stack(rows, 1) if rows else b.double()[:, :0]
    state_dtype = initial_state.dtype if initial_state is not None else b.dtype
    return hs.to(b.dtype), h.to(state_dtype)


def scratch_step_naive(a: torch.Tensor, b: torch.Tensor, states: torch.Tensor):
    """a, b, states: one shape. Returns a * states + b, computed in fp64, in b's dtype."""
    a, b, states = check_scratch(a, b, states)
    return (a.double() * states.double() + b.double()).to(b.dtype)
