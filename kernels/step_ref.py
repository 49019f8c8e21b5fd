"""Pure-torch single steps of the diagonal recurrence (decode commit and transient scratchpad)."""
from __future__ import annotations

import torch


def diagonal_step_ref(a: torch.Tensor, b: torch.Tensor, state_pool: torch.Tensor, slot_index: torch.Tensor):
    """Commit one step in place: state_pool[slot[i]] = a[i] * state_pool[slot[i]] + b[i].
    a, b: [N, D]; state_pool: [S, D]; slot_index: [N] long (distinct). Returns the new states [N, D]."""
    new = a * state_pool[slot_index] + b
    state_pool[slot_index] = new
    return new


def scratch_step_ref(a: torch.Tensor, b: torch.Tensor, states: torch.Tensor):
    """Transient step a * states + b from gathered committed states [N, D]; writes nothing."""
    return a * states + b
