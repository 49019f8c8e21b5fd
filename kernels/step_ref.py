"""Pure-torch single steps of the diagonal recurrence (decode commit and transient scratchpad).

Same signatures and semantics as the Triton kernels in `kernels.step_triton`:

  diagonal_step(a, b, state_pool, slot_index) -> new [N, D]
      Commit one step in place through a row -> slot index (mamba's state_batch_indices pattern):
      state_pool[slot[i]] = a[i] * state_pool[slot[i]] + b[i]. A negative slot marks a padding row:
      nothing is read or written for it and its output row is b[i] (the step from a zero state).
      Slots must be distinct and < S: this reference checks that (ValueError); the Triton kernel
      cannot without a host sync, so there an out-of-range slot is skipped like a padding row and
      duplicate slots are undefined. Inference only: not differentiable.

  scratch_step(a, b, states) -> a * states + b
      The transient scratchpad step: any shape (all three the same), writes nothing, differentiable
      in a, b and states.

Outputs have b's dtype (like the scan's h); state_pool keeps its own dtype (b's or fp32).
Arithmetic in fp32 (fp64 for fp64 inputs).
"""
from __future__ import annotations

import torch

from kernels._validate import acc_dtype, check_scratch, check_step


def diagonal_step_ref(a: torch.Tensor, b: torch.Tensor, state_pool: torch.Tensor, slot_index: torch.Tensor):
    """a, b: [N, D]; state_pool: [S, D] (written in place); slot_index: [N] int32/int64 (distinct,
    < S; negative = padding row). Returns the new states [N, D] in b's dtype."""
    a, b, state_pool, slot_index = check_step(a, b, state_pool, slot_index)
    S = state_pool.shape[0]
    slot = slot_index.long()
    acc = acc_dtype(b.dtype)
    with torch.no_grad():
        if not slot.numel():
            return b.clone()
        lo, hi = (int(x) for x in torch.aminmax(slot))
        if hi >= S:
            raise ValueError(f"diagonal_step: slot_index has {hi}, but state_pool has only {S} slots")
        if lo >= 0:  # the common case: no padding rows
            real = slot
            prev = state_pool.index_select(0, slot).to(acc)
        else:
            valid = slot >= 0
            real = slot[valid]
            prev = state_pool.index_select(0, slot.clamp(min=0)).to(acc)
            prev = torch.where(valid.unsqueeze(1), prev, torch.zeros((), dtype=acc, device=prev.device))
        if real.numel() > 1 and torch.unique(real).numel() != real.numel():
            raise ValueError("diagonal_step: slot_index has duplicate slots (each row must own a distinct slot)")
        new = torch.addcmul(b.to(acc), a.to(acc), prev)
        if lo >= 0:
            state_pool.index_copy_(0, slot, new.to(state_pool.dtype))
        else:
            state_pool.index_copy_(0, real, new[valid].to(state_pool.dtype))
    return new.to(b.dtype)


def scratch_step_ref(a: torch.Tensor, b: torch.Tensor, states: torch.Tensor):
    """a, b, states: one shape (e.g. [N, D] or [B, Q, D]). Returns a * states + b in b's dtype;
    writes nothing; differentiable in a, b and states."""
    a, b, states = check_scratch(a, b, states)
    acc = acc_dtype(b.dtype)
    return torch.addcmul(b.to(acc), a.to(acc), states.to(acc)).to(b.dtype)
