"""Triton single steps: the decode commit through a slot index, and the transient scratchpad step.

Semantics are those of `kernels.step_ref` (see there); the differences are only what a kernel
cannot check without a host sync: an out-of-range slot is skipped like a padding row (never
written out of bounds) and duplicate slots are undefined.

This module imports triton at the top; `kernels/__init__.py` imports it lazily.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels._validate import check_scratch, check_step
from kernels.scan_triton import _empty, check_device, on_device


@triton.jit
def _diagonal_step_kernel(
    a_ptr, b_ptr, pool_ptr, slot_ptr, out_ptr,
    D, S, stride_s, stride_d,
    BLOCK_D: tl.constexpr,
):
    row = tl.program_id(0)
    pid_d = tl.program_id(1)
    offs = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs < D
    slot = tl.load(slot_ptr + row).to(tl.int64)
    ok = (slot >= 0) & (slot < S)
    sp = pool_ptr + slot * stride_s + offs.to(tl.int64) * stride_d
    s = tl.load(sp, mask=md & ok, other=0.0).to(tl.float32)
    ro = row.to(tl.int64) * D + offs
    a = tl.load(a_ptr + ro, mask=md, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + ro, mask=md, other=0.0).to(tl.float32)
    new = a * s + b
    tl.store(sp, new.to(pool_ptr.dtype.element_ty), mask=md & ok)
    tl.store(out_ptr + ro, new.to(out_ptr.dtype.element_ty), mask=md)


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


def _no_fp64(name: str, a: torch.Tensor) -> None:
    if a.dtype == torch.float64:
        raise ValueError(f"{name} (Triton) computes in fp32; use the torch path (SCRATCHPAD_KERNELS=torch) for fp64")


def diagonal_step_triton(a, b, state_pool, slot_index):
    """a, b: [N, D]; state_pool: [S, D] written in place; slot_index: [N] int (negative = padding).
    Returns the new states [N, D] in b's dtype. See kernels.step_ref for the full contract."""
    a, b, state_pool, slot_index = check_step(a, b, state_pool, slot_index)
    _no_fp64("diagonal_step", a)
    check_device(a)
    N, D = a.shape
    out = _empty(b.shape, dtype=b.dtype, device=b.device)
    if N == 0 or D == 0:
        return out
    BD = max(16, min(1024, triton.next_power_of_2(D)))
    grid = (N, triton.cdiv(D, BD))
    with on_device(a):
        _diagonal_step_kernel[grid](
            a, b, state_pool, slot_index, out, D, state_pool.shape[0], state_pool.stride(0), state_pool.stride(1),
            BLOCK_D=BD, num_warps=max(1, min(4, BD // 256)),
        )
    return out


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


def scratch_step_triton(a, b, states):
    """a, b, states: one shape. Returns a * states + b in b's dtype; writes nothing; differentiable
    (through the custom operator scratchpad::triton_scratch_step, see kernels.ops)."""
    from kernels.ops import triton_scratch_step  # kernels.ops imports this module

    a, b, states = check_scratch(a, b, states)
    _no_fp64("scratch_step", a)
    check_device(a)
    return triton_scratch_step(a, b, states)
