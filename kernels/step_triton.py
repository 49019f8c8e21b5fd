"""Triton transient scratchpad step: a * states + b, forward and backward kernels.

Semantics are those of `kernels.step_torch` (see there); tested against `kernels.naive`. `kernels.ops` wraps the two kernels in the
custom operator scratchpad::triton_scratch_step, so the step is differentiable and compiles.

This module imports triton at the top; `kernels/__init__.py` imports it lazily.
"""
from __future__ import annotations

import triton
import triton.language as tl

from kernels.scan_triton import _empty, on_device


@triton.jit
def _scratch_fwd_kernel(a_ptr, b_ptr, s_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(a_ptr + offs, mask=m, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + offs, mask=m, other=0.0).to(tl.float32)
    s = tl.load(s_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (a * s + b).to(out_ptr.dtype.element_ty), mask=m)


@triton.jit
def _scratch_bwd_kernel(g_ptr, a_ptr, s_ptr, da_ptr, db_ptr, ds_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    g = tl.load(g_ptr + offs, mask=m, other=0.0).to(tl.float32)
    a = tl.load(a_ptr + offs, mask=m, other=0.0).to(tl.float32)
    s = tl.load(s_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(da_ptr + offs, (g * s).to(da_ptr.dtype.element_ty), mask=m)
    tl.store(db_ptr + offs, g.to(db_ptr.dtype.element_ty), mask=m)
    tl.store(ds_ptr + offs, (g * a).to(ds_ptr.dtype.element_ty), mask=m)


_SCRATCH_BLOCK = 1024


def scratch_forward(a, b, states):
    """a * states + b for contiguous a, b, states of one shape; returns b's dtype."""
    out = _empty(b.shape, dtype=b.dtype, device=b.device)
    n = b.numel()
    if n:
        with on_device(a):
            _scratch_fwd_kernel[(triton.cdiv(n, _SCRATCH_BLOCK),)](a, b, states, out, n, BLOCK=_SCRATCH_BLOCK, num_warps=4)
    return out


def scratch_backward(g, a, states):
    """Gradients of scratch_forward for the contiguous output gradient g: (g * states, g, g * a) in
    the dtypes of a, b (= a's) and states."""
    da = _empty(a.shape, dtype=a.dtype, device=a.device)
    db = _empty(g.shape, dtype=a.dtype, device=g.device)
    ds = _empty(states.shape, dtype=states.dtype, device=states.device)
    n = g.numel()
    if n:
        with on_device(a):
            _scratch_bwd_kernel[(triton.cdiv(n, _SCRATCH_BLOCK),)](g, a, states, da, db, ds, n, BLOCK=_SCRATCH_BLOCK, num_warps=4)
    return da, db, ds
