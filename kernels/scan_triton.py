"""Triton diagonal scan h_t = a_t * h_{t-1} + b_t over [B, T, D], forward and backward.

Layout: contiguous [B, T, D]. One program owns a block of BLOCK_D channels of one batch row and one
chunk of T, grid (cdiv(D, BLOCK_D), n_chunks, B). Within a program the recurrence runs sequentially
over time, four rows per loop iteration with all eight loads of a group issued before the first
dependent fma, so every program keeps several independent row loads in flight and the many
programs of the grid keep the memory system busy.

Chunking over T gives parallelism when B * D / BLOCK_D alone would leave the GPU idle (small batch,
long T). With n_chunks > 1 a first kernel computes every chunk's affine summary from a zero state,
(P_c = prod a, E_c = end value), into small fp32 [B, n_chunks, D] buffers; kernels/scan_carry.py
turns them into the state entering every chunk with a parallel tree (no program walks the chunks);
the main kernel then loads its chunk's start state and sweeps its chunk again, writing h. That
reads a and b twice (5 passes over memory instead of 3), so n_chunks = 1 whenever the grid is
already large enough. Chunk length, BLOCK_D and warps come from kernels/scan_plan.py.

Backward, the same structure in reverse time:
    g_t = dh_t + u_{t+1},  u_t = a_t * g_t,  u_T = d_final
    db_t = g_t,  da_t = g_t * h_{t-1},  d_initial = u_0 = a_0 * g_0
with h_{-1} = initial_state (or 0); the chunk summaries, composed by the same tree in reverse,
give the u entering every chunk from the right.

Everything accumulates in fp32; h/final/grads are stored in their tensors' dtypes (fp16, bf16 or
fp32). Only multiplications and additions: a_t = 0 is an exact reset.

This module imports triton at the top; `kernels/__init__.py` imports it lazily.
"""
from __future__ import annotations

import contextlib

import torch
import triton
import triton.language as tl

from kernels._validate import check_scan
from kernels.scan_carry import chunk_start_states
from kernels.scan_plan import Plan, launch_plan, warps_for

# ---------------------------------------------------------------------------------------------
# kernels


@triton.jit
def _ld(ptr, t, lo, hi, D, offs, mask_d, other):
    """Row t of a [T, D] slab as fp32, `other` where t is outside [lo, hi) or the channel is padding."""
    ok = (t >= lo) & (t < hi)
    return tl.load(ptr + t * D + offs, mask=mask_d & ok, other=other).to(tl.float32)


@triton.jit
def _scan_summary_kernel(
    a_ptr, x_ptr, p_ptr, e_ptr,
    T, D, CHUNK, NC,
    REVERSE: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Per chunk from a zero state: P = prod a, and
    forward:  E = h at the chunk's last row, h_t = a_t h_{t-1} + x_t  (x = b);
    reverse:  E = u at the chunk's first row, u_t = a_t (u_{t+1} + x_t)  (x = dh)."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    offs = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs < D
    base = pid_b.to(tl.int64) * T * D
    a_ptr += base
    x_ptr += base
    t0 = pid_c * CHUNK
    t1 = tl.minimum(t0 + CHUNK, T)
    p = tl.full([BLOCK_D], 1.0, tl.float32)
    e = tl.zeros([BLOCK_D], tl.float32)
    for k in range(0, t1 - t0, 4):
        if REVERSE:
            t = t1 - 1 - k
            s = -1
        else:
            t = t0 + k
            s = 1
        a0 = _ld(a_ptr, t, t0, t1, D, offs, md, 1.0)
        a1 = _ld(a_ptr, t + s, t0, t1, D, offs, md, 1.0)
        a2 = _ld(a_ptr, t + 2 * s, t0, t1, D, offs, md, 1.0)
        a3 = _ld(a_ptr, t + 3 * s, t0, t1, D, offs, md, 1.0)
        x0 = _ld(x_ptr, t, t0, t1, D, offs, md, 0.0)
        x1 = _ld(x_ptr, t + s, t0, t1, D, offs, md, 0.0)
        x2 = _ld(x_ptr, t + 2 * s, t0, t1, D, offs, md, 0.0)
        x3 = _ld(x_ptr, t + 3 * s, t0, t1, D, offs, md, 0.0)
        if REVERSE:
            e = a0 * (e + x0)
            e = a1 * (e + x1)
            e = a2 * (e + x2)
            e = a3 * (e + x3)
        else:
            e = a0 * e + x0
            e = a1 * e + x1
            e = a2 * e + x2
            e = a3 * e + x3
        p = p * ((a0 * a1) * (a2 * a3))
    so = (pid_b * NC + pid_c).to(tl.int64) * D + offs
    tl.store(p_ptr + so, p, mask=md)
    tl.store(e_ptr + so, e, mask=md)


@triton.jit
def _fwd_row(h, a, b, h_ptr, t, lo, hi, D, offs, md):
    h = a * h + b
    tl.store(h_ptr + t * D + offs, h.to(h_ptr.dtype.element_ty), mask=md & (t >= lo) & (t < hi))
    return h


@triton.jit
def _scan_fwd_kernel(
    a_ptr, b_ptr, start_ptr, h_ptr, hT_ptr,
    T, D, CHUNK, NC,
    HAS_START: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """start: [B, NC, D], the state entering every chunk (the initial state when NC = 1); zeros
    without HAS_START."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    offs = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs < D
    if HAS_START:
        h = tl.load(start_ptr + (pid_b * NC + pid_c).to(tl.int64) * D + offs, mask=md, other=0.0).to(tl.float32)
    else:
        h = tl.zeros([BLOCK_D], tl.float32)
    base = pid_b.to(tl.int64) * T * D
    a_ptr += base
    b_ptr += base
    h_ptr += base
    t0 = pid_c * CHUNK
    t1 = tl.minimum(t0 + CHUNK, T)
    for t in range(t0, t1, 4):
        a0 = _ld(a_ptr, t, t0, t1, D, offs, md, 1.0)
        a1 = _ld(a_ptr, t + 1, t0, t1, D, offs, md, 1.0)
        a2 = _ld(a_ptr, t + 2, t0, t1, D, offs, md, 1.0)
        a3 = _ld(a_ptr, t + 3, t0, t1, D, offs, md, 1.0)
        b0 = _ld(b_ptr, t, t0, t1, D, offs, md, 0.0)
        b1 = _ld(b_ptr, t + 1, t0, t1, D, offs, md, 0.0)
        b2 = _ld(b_ptr, t + 2, t0, t1, D, offs, md, 0.0)
        b3 = _ld(b_ptr, t + 3, t0, t1, D, offs, md, 0.0)
        h = _fwd_row(h, a0, b0, h_ptr, t, t0, t1, D, offs, md)
        h = _fwd_row(h, a1, b1, h_ptr, t + 1, t0, t1, D, offs, md)
        h = _fwd_row(h, a2, b2, h_ptr, t + 2, t0, t1, D, offs, md)
        h = _fwd_row(h, a3, b3, h_ptr, t + 3, t0, t1, D, offs, md)
    if pid_c == NC - 1:
        tl.store(hT_ptr + pid_b.to(tl.int64) * D + offs, h.to(hT_ptr.dtype.element_ty), mask=md)


@triton.jit
def _bwd_row(u, dh, a, hp, da_ptr, db_ptr, t, lo, hi, D, offs, md):
    g = dh + u
    m = md & (t >= lo) & (t < hi)
    tl.store(db_ptr + t * D + offs, g.to(db_ptr.dtype.element_ty), mask=m)
    tl.store(da_ptr + t * D + offs, (g * hp).to(da_ptr.dtype.element_ty), mask=m)
    return a * g


@triton.jit
def _ld_prev(h_ptr, h0, t, lo, hi, D, offs, md, HAS_H0: tl.constexpr):
    """h_{t-1} as fp32: the saved output, or the initial state (zeros without one) at t = 0."""
    hp = tl.load(h_ptr + (t - 1) * D + offs, mask=md & (t >= lo) & (t < hi) & (t >= 1), other=0.0).to(tl.float32)
    if HAS_H0:
        hp = tl.where(t == 0, h0, hp)
    return hp


@triton.jit
def _scan_bwd_kernel(
    a_ptr, h_ptr, h0_ptr, dh_ptr, start_ptr, da_ptr, db_ptr, dh0_ptr,
    T, D, CHUNK, NC,
    HAS_H0: tl.constexpr, HAS_START: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """start: [B, NC, D], the carry u entering every chunk from the right (d_final when NC = 1);
    zeros without HAS_START."""
    pid_d = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_b = tl.program_id(2)
    offs = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs < D
    if HAS_START:
        u = tl.load(start_ptr + (pid_b * NC + pid_c).to(tl.int64) * D + offs, mask=md, other=0.0).to(tl.float32)
    else:
        u = tl.zeros([BLOCK_D], tl.float32)
    if HAS_H0:
        h0 = tl.load(h0_ptr + pid_b.to(tl.int64) * D + offs, mask=md, other=0.0).to(tl.float32)
    else:
        h0 = tl.zeros([BLOCK_D], tl.float32)
    base = pid_b.to(tl.int64) * T * D
    a_ptr += base
    h_ptr += base
    dh_ptr += base
    da_ptr += base
    db_ptr += base
    t0 = pid_c * CHUNK
    t1 = tl.minimum(t0 + CHUNK, T)
    for k in range(0, t1 - t0, 4):
        t = t1 - 1 - k
        a0 = _ld(a_ptr, t, t0, t1, D, offs, md, 1.0)
        a1 = _ld(a_ptr, t - 1, t0, t1, D, offs, md, 1.0)
        a2 = _ld(a_ptr, t - 2, t0, t1, D, offs, md, 1.0)
        a3 = _ld(a_ptr, t - 3, t0, t1, D, offs, md, 1.0)
        g0 = _ld(dh_ptr, t, t0, t1, D, offs, md, 0.0)
        g1 = _ld(dh_ptr, t - 1, t0, t1, D, offs, md, 0.0)
        g2 = _ld(dh_ptr, t - 2, t0, t1, D, offs, md, 0.0)
        g3 = _ld(dh_ptr, t - 3, t0, t1, D, offs, md, 0.0)
        p0 = _ld_prev(h_ptr, h0, t, t0, t1, D, offs, md, HAS_H0)
        p1 = _ld_prev(h_ptr, h0, t - 1, t0, t1, D, offs, md, HAS_H0)
        p2 = _ld_prev(h_ptr, h0, t - 2, t0, t1, D, offs, md, HAS_H0)
        p3 = _ld_prev(h_ptr, h0, t - 3, t0, t1, D, offs, md, HAS_H0)
        u = _bwd_row(u, g0, a0, p0, da_ptr, db_ptr, t, t0, t1, D, offs, md)
        u = _bwd_row(u, g1, a1, p1, da_ptr, db_ptr, t - 1, t0, t1, D, offs, md)
        u = _bwd_row(u, g2, a2, p2, da_ptr, db_ptr, t - 2, t0, t1, D, offs, md)
        u = _bwd_row(u, g3, a3, p3, da_ptr, db_ptr, t - 3, t0, t1, D, offs, md)
    if HAS_H0:  # noqa: SIM102 -- a constexpr test around a runtime one
        if pid_c == 0:
            tl.store(dh0_ptr + pid_b.to(tl.int64) * D + offs, u.to(dh0_ptr.dtype.element_ty), mask=md)


# ---------------------------------------------------------------------------------------------
# launch


def on_device(t: torch.Tensor):
    """Launch on the tensor's GPU (Triton launches on the current device)."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _empty(shape, *, dtype, device) -> torch.Tensor:
    """Every buffer a kernel writes comes from here (tests fill them with NaN to catch unwritten elements)."""
    return torch.empty(shape, dtype=dtype, device=device)


def _interpreting() -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(_scan_fwd_kernel, InterpretedFunction)


def check_device(*tensors: torch.Tensor) -> None:
    """Triton needs CUDA tensors, or CPU tensors with kernels built under TRITON_INTERPRET=1."""
    dev = tensors[0].device
    if dev.type == "cuda":
        return
    if dev.type == "cpu" and _interpreting():
        return
    raise RuntimeError(
        f"the Triton kernels need CUDA tensors (got {dev}); on CPU they run only under the Triton "
        "interpreter, with TRITON_INTERPRET=1 set before triton is first imported. "
        "Use SCRATCHPAD_KERNELS=torch (or auto) for the pure-torch path."
    )


def resolve_plan(B: int, T: int, D: int, device: torch.device, chunk_size=None, block_d=None, num_warps=None) -> Plan:
    """The launch plan: kernels/scan_plan.py's, with any of chunk_size / block_d / num_warps overridden."""
    for name, v in (("chunk_size", chunk_size), ("num_warps", num_warps)):
        if v is not None and int(v) < 1:
            raise ValueError(f"diagonal_scan_triton: {name} must be >= 1, got {v}")
    if block_d is not None and (block_d < 1 or block_d & (block_d - 1)):
        raise ValueError(f"diagonal_scan_triton: block_d must be a power of two, got {block_d}")
    plan = launch_plan(B, T, D, device)
    bd = int(block_d) if block_d else plan.block_d
    warps = int(num_warps) if num_warps else (plan.num_warps if bd == plan.block_d else warps_for(bd))
    chunk = min(int(chunk_size) if chunk_size else plan.chunk, T)
    return Plan(chunk, bd, warps)


def _grid(plan: Plan, B: int, T: int, D: int):
    return (triton.cdiv(D, plan.block_d), triton.cdiv(T, plan.chunk), B)


def _chunk_starts(a, x, init, reverse: bool, plan: Plan):
    """[B, NC, D] fp32: the state (carry) entering every chunk, or None with one chunk (then the
    sweep starts from init itself)."""
    B, T, D = a.shape
    grid = _grid(plan, B, T, D)
    NC = grid[1]
    if NC == 1:
        return None
    p = _empty((B, NC, D), device=a.device, dtype=torch.float32)
    e = _empty((B, NC, D), device=a.device, dtype=torch.float32)
    _scan_summary_kernel[grid](a, x, p, e, T, D, plan.chunk, NC, REVERSE=reverse, BLOCK_D=plan.block_d,
                               num_warps=plan.num_warps)
    return chunk_start_states(p, e, init, reverse, empty=_empty)


def scan_forward(a, b, h0, plan: Plan):
    """No autograd. a, b: contiguous [B, T, D] (T, B, D > 0); h0: [B, D] or None.
    Returns (h [B, T, D] in b's dtype, final [B, D] in h0's dtype or b's)."""
    B, T, D = b.shape
    grid = _grid(plan, B, T, D)
    h = _empty(b.shape, dtype=b.dtype, device=b.device)
    hT = _empty((B, D), device=b.device, dtype=h0.dtype if h0 is not None else b.dtype)
    start = _chunk_starts(a, b, h0, False, plan)
    if start is None:
        start = h0
    _scan_fwd_kernel[grid](
        a, b, start if start is not None else hT, h, hT, T, D, plan.chunk, grid[1],
        HAS_START=start is not None, BLOCK_D=plan.block_d, num_warps=plan.num_warps,
    )
    return h, hT


def scan_backward(a, h, h0, dh, dhT, plan: Plan):
    """No autograd. Gradients of (h, final) -> (da, db, dh0 or None) for the scan that produced h
    from (a, b, h0); dh [B, T, D] or None (zeros), dhT [B, D] or None (zeros)."""
    B, T, D = h.shape
    dh = torch.zeros_like(h) if dh is None else dh.contiguous()
    dhT = dhT.contiguous() if dhT is not None else None
    grid = _grid(plan, B, T, D)
    da = _empty(a.shape, dtype=a.dtype, device=a.device)
    db = _empty(h.shape, dtype=h.dtype, device=h.device)
    dh0 = _empty(h0.shape, dtype=h0.dtype, device=h0.device) if h0 is not None else None
    start = _chunk_starts(a, dh, dhT, True, plan)
    if start is None:
        start = dhT
    _scan_bwd_kernel[grid](
        a, h, h0 if h0 is not None else dh, dh, start if start is not None else dh,
        da, db, dh0 if dh0 is not None else dh, T, D, plan.chunk, grid[1],
        HAS_H0=h0 is not None, HAS_START=start is not None, BLOCK_D=plan.block_d, num_warps=plan.num_warps,
    )
    return da, db, dh0


class _TritonScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, h0, plan):
        h, hT = scan_forward(a, b, h0, plan)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(a, h, h0)
        ctx.plan = plan
        return h, hT

    @staticmethod
    def backward(ctx, dh, dhT):
        a, h, h0 = ctx.saved_tensors
        with on_device(a):
            da, db, dh0 = scan_backward(a, h, h0, dh, dhT, ctx.plan)
        return da, db, dh0, None


def diagonal_scan_triton(a, b, initial_state=None, *, chunk_size: int | None = None, block_d: int | None = None,
                         num_warps: int | None = None):
    """h_t = a_t * h_{t-1} + b_t. a, b: [B, T, D] fp16/bf16/fp32; initial_state: [B, D] (a's dtype
    or fp32) or None. Returns (h in b's dtype, final_state in initial_state's dtype or b's).
    Differentiable in a, b and initial_state. chunk_size / block_d / num_warps override the launch
    plan (kernels/scan_plan.py)."""
    a, b, initial_state = check_scan(a, b, initial_state)
    if a.dtype == torch.float64:
        raise ValueError("diagonal_scan_triton accumulates in fp32; use the torch path (diagonal_scan_chunked) for fp64")
    check_device(a)
    B, T, D = b.shape
    if T == 0 or B == 0 or D == 0:  # nothing to launch; the torch path handles it (and its autograd)
        from kernels.scan_chunked import diagonal_scan_chunked

        return diagonal_scan_chunked(a, b, initial_state)
    if T * D >= 2**31:
        raise ValueError(f"diagonal_scan_triton: T * D = {T * D} must be < 2**31 (int32 row offsets)")
    plan = resolve_plan(B, T, D, a.device, chunk_size, block_d, num_warps)
    with on_device(a):
        return _TritonScan.apply(a, b, initial_state, plan)
