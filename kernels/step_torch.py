"""The torch path of the transient scratchpad step of the diagonal recurrence.

Same signature and semantics as the Triton kernel in `kernels.step_triton`; tested, like it,
against `kernels.naive.scratch_step_naive`:

  scratch_step_torch(a, b, states) -> a * states + b
      Any shape (all three the same), writes nothing, differentiable in a, b and states.

The output has b's dtype (like the scan's h); states may be b's dtype or fp32.
Arithmetic in fp32 (fp64 for fp64 inputs).
"""
from __future__ import annotations

import torch

from kernels._validate import acc_dtype, check_scratch


def scratch_step_torch(a: torch.Tensor, b: torch.Tensor, states: torch.Tensor):
    """a, b, states: one shape (e.g. [N, D] or [B, Q, D]). Returns a * states + b in b's dtype;
    writes nothing; differentiable in a, b and states."""
    a, b, states = check_scratch(a, b, states)
    acc = acc_dtype(b.dtype)
    return torch.addcmul(b.to(acc), a.to(acc), states.to(acc)).to(b.dtype)
