"""Pure-torch diagonal scan: h_t = a_t * h_{t-1} + b_t over [B, T, D].

Parallel (Hillis-Steele) prefix over the affine maps (a, b): log2(T) vectorised steps, no
division or logarithm, so a_t = 0 (a state reset) is exact. Autograd differentiates it directly.
"""
from __future__ import annotations

import torch


def diagonal_scan_ref(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None):
    """a, b: [B, T, D]; initial_state: [B, D] or None. Returns (h [B, T, D], final_state [B, D]).

    Accumulates in fp32 (or fp64 if the inputs are fp64) and returns h in the input dtype.
    """
    out_dtype = b.dtype
    acc = torch.float64 if b.dtype == torch.float64 else torch.float32
    a = a.to(acc)
    b = b.to(acc)
    if initial_state is not None:
        b = torch.cat([b[:, :1] + a[:, :1] * initial_state.to(acc).unsqueeze(1), b[:, 1:]], dim=1)
    T = b.shape[1]
    step = 1
    while step < T:
        # combine (a_prev, b_prev) then (a, b): a <- a * a_prev, b <- a * b_prev + b
        b = torch.cat([b[:, :step], b[:, step:] + a[:, step:] * b[:, :-step]], dim=1)
        a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], dim=1)
        step *= 2
    if T == 0:
        final = initial_state.to(acc) if initial_state is not None else b.new_zeros(b.shape[0], b.shape[2])
    else:
        final = b[:, -1]
    return b.to(out_dtype), final.to(out_dtype)


def diagonal_scan_loop(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None):
    """The recurrence written as a loop: the slow ground truth the parallel forms are tested against."""
    h = initial_state.to(torch.float64) if initial_state is not None else a.new_zeros(a.shape[0], a.shape[2], dtype=torch.float64)
    outs = []
    for t in range(a.shape[1]):
        h = a[:, t].double() * h + b[:, t].double()
        outs.append(h)
    hs = torch.stack(outs, 1) if outs else a.new_zeros(a.shape, dtype=torch.float64)
    return hs.to(b.dtype), h.to(b.dtype)
