"""The torch path of the diagonal scan h_t = a_t * h_{t-1} + b_t over [B, T, D]: chunked.

`diagonal_scan_chunked` is what `kernels.diagonal_scan` runs off CUDA (and for fp64). It is tested
against the plain loop of kernels/naive.py. T is cut into chunks of L positions (L ~ sqrt(T), a
power of two) and

  1. a sweep over the L positions of every chunk at once (tensors [B, C, D]) gives each chunk's
     end value from a zero state, E_c, and `prod` gives its decay product P_c;
  2. a sweep over the C chunks carries the state across chunks: s_{c+1} = P_c * s_c + E_c;
  3. a second sweep over the L positions, started from s_c, writes h.

That is about L + C + L small vectorised steps (~100 at T=1024) instead of log2(T) full-length
passes, and about 6 passes over memory in all. Only multiplications and additions: no division or
logarithm, so a_t = 0 (a state reset) is exact -- everything after a reset is bitwise independent
of everything before it (for finite values). fp64 inputs are computed in fp64; fp16/bf16/fp32
accumulate in fp32.

Autograd: a torch.autograd.Function (under torch.compile the `chunked_scan` operator) whose backward is the same scan run in reverse,
    g_t = dh_t + a_{t+1} g_{t+1},  g_{T-1} = dh_{T-1} + d_final,
    db_t = g_t,  da_t = g_t * h_{t-1},  d_initial = a_0 * g_0,
written with differentiable operations, so double backward works as well.

`diagonal_scan_hillis_steele` is the previous torch path (log2(T) full-length passes), kept for the
benchmark's before/after comparison.
"""
from __future__ import annotations

import math

import torch

from kernels._validate import acc_dtype, check_scan


def default_chunk(T: int) -> int:
    """Chunk length ~ sqrt(T) (the largest power of two <= sqrt(T), within [4, 256]): balances the
    L-sweeps against the C-sweep. T=40 -> 4, 1024 -> 32, 16384 -> 128."""
    if T < 16:
        return 4
    return int(min(256, max(4, 2 ** math.floor(math.log2(math.sqrt(T))))))


@torch.no_grad()
def _scan_core(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool, chunk: int):
    """Forward (reverse=False): h_t = a_t h_{t-1} + b_t from h_{-1} = h0.
    Reverse (reverse=True):     h_t = a_t h_{t+1} + b_t from h_T = h0.
    a, b: contiguous [B, T, D] of one dtype (the compute dtype); h0 [B, D] of it or None.
    Returns (h [B, T, D], final [B, D]) -- final is h_{T-1} (forward) or h_0 (reverse)."""
    B, T, D = b.shape
    carry = h0.clone() if h0 is not None else b.new_zeros(B, D)
    L = chunk
    C = T // L
    M = C * L
    # the main part: C whole chunks; forward it covers [0, M), reverse it covers [T - M, T).
    # The ragged rest (< L positions) is swept one position at a time after it. Results are
    # collected and stacked (no writes into views through out=), so torch.compile traces the scan
    # without a graph break.
    lo = T - M if reverse else 0
    tail = range(T - M - 1, -1, -1) if reverse else range(M, T)
    main = None
    if C > 0:
        a4 = a[:, lo:lo + M].view(B, C, L, D)
        b4 = b[:, lo:lo + M].view(B, C, L, D)
        ls = range(L - 1, -1, -1) if reverse else range(L)
        if C > 1:
            # 1. per-chunk end value from a zero state, and the chunk's decay product
            it = iter(ls)
            e = b4[:, :, next(it)].clone()
            for l in it:
                e = torch.addcmul(b4[:, :, l], a4[:, :, l], e)
            p = a4.prod(dim=2)
            # 2. carry across chunks: starts[c] is the state entering chunk c
            cs = range(C - 1, -1, -1) if reverse else range(C)
            starts = [None] * C
            prev = None
            for c in cs:
                starts[c] = carry if prev is None else torch.addcmul(e[:, prev], p[:, prev], starts[prev])
                prev = c
            x = torch.stack(starts, 1)
        else:
            x = carry.unsqueeze(1)
        # 3. the sweep that writes h, every chunk started from its carried state
        rows = [None] * L
        for l in ls:
            x = torch.addcmul(b4[:, :, l], a4[:, :, l], x)
            rows[l] = x
        main = torch.stack(rows, 2).view(B, M, D)
        carry = main[:, 0] if reverse else main[:, M - 1]
    rest = [None] * (T - M)
    for t in tail:
        carry = torch.addcmul(b[:, t], a[:, t], carry)
        rest[t - (0 if reverse else M)] = carry
    parts = [main] if main is not None else []
    if rest:
        parts.insert(0 if reverse else len(parts), torch.stack(rest, 1))
    h = torch.cat(parts, 1) if len(parts) > 1 else parts[0]
    return h, carry.clone()


class _ChunkedScan(torch.autograd.Function):
    """(a, b, h0) -> (h, final) in one compute dtype; `reverse` runs the recurrence backwards in time."""

    @staticmethod
    def forward(ctx, a, b, h0, reverse: bool, chunk: int):
        h, final = _scan_core(a, b, h0, reverse, chunk)
        ctx.reverse = reverse
        ctx.chunk = chunk
        ctx.has_h0 = h0 is not None
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(a, h, h0)
        return h, final

    @staticmethod
    def backward(ctx, dh, dfinal):
        return _scan_backward(_ChunkedScan.apply, ctx, dh, dfinal)


def _scan_backward(scan, ctx, dh, dfinal):
    """Gradients of (a, b, h0) for the scan's outputs (h, final), by the reverse-direction scan
    `scan` (the autograd Function eagerly, the custom operator under compile)."""
    a, h, h0 = ctx.saved_tensors
    rev = ctx.reverse
    if dh is None and dfinal is None:
        return None, None, None, None, None
    if dh is None:
        dh = torch.zeros_like(h)
    B, _, D = h.shape
    one = a.new_ones(B, 1, D)
    start = (h0 if ctx.has_h0 else a.new_zeros(B, D)).unsqueeze(1)
    if not rev:
        # g_t = dh_t + a_{t+1} g_{t+1}: a reverse scan with coefficients shifted left by one
        coef = torch.cat([a[:, 1:], one], dim=1)
        g, g0 = scan(coef, dh, dfinal, True, ctx.chunk)
        prev = torch.cat([start, h[:, :-1]], dim=1)  # h_{t-1}
        d0 = a[:, 0] * g0
    else:
        # h_t = a_t h_{t+1} + b_t: g_t = dh_t + a_{t-1} g_{t-1}, a forward scan shifted right
        coef = torch.cat([one, a[:, :-1]], dim=1)
        g, g0 = scan(coef, dh, dfinal, False, ctx.chunk)
        prev = torch.cat([h[:, 1:], start], dim=1)  # h_{t+1}
        d0 = a[:, -1] * g0
    da = g * prev
    return da, g, (d0 if ctx.has_h0 else None), None, None


@torch.library.custom_op("scratchpad::chunked_scan", mutates_args=())
def chunked_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, reverse: bool, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """_ChunkedScan as an operator that torch.compile treats as opaque: a traced graph calls it as
    one node instead of unrolling the ~3 sqrt(T) steps of every scan (minutes of compile time on a
    CPU), with no graph break. Eager code uses _ChunkedScan: the first call of a custom operator
    imports torch's compile machinery (and triton), which the torch path must not pay for."""
    return _scan_core(a, b, h0, reverse, chunk)


@chunked_scan.register_fake
def _chunked_scan_fake(a, b, h0, reverse, chunk):
    return torch.empty_like(b), b.new_empty(b.shape[0], b.shape[2])


def _chunked_scan_setup(ctx, inputs, output):
    a, _, h0, reverse, chunk = inputs
    ctx.reverse, ctx.chunk, ctx.has_h0 = reverse, chunk, h0 is not None
    ctx.save_for_backward(a, output[0], h0)


def _chunked_scan_backward(ctx, dh, dfinal):
    return _scan_backward(chunked_scan, ctx, dh, dfinal)


chunked_scan.register_autograd(_chunked_scan_backward, setup_context=_chunked_scan_setup)


def diagonal_scan_chunked(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None, *, chunk_size: int | None = None):
    """h_t = a_t * h_{t-1} + b_t. a, b: [B, T, D]; initial_state: [B, D] or None.

    Returns (h [B, T, D] in b's dtype, final_state [B, D] in initial_state's dtype, or b's when
    None). Accumulates in fp32 (fp64 for fp64 inputs). Differentiable in a, b and initial_state.
    T = 0 gives an empty h and the initial state (or zeros) as the final state.
    """
    a, b, initial_state = check_scan(a, b, initial_state)
    B, T, D = b.shape
    out_dtype = b.dtype
    state_dtype = initial_state.dtype if initial_state is not None else out_dtype
    acc = acc_dtype(b.dtype)
    if T == 0:  # empty h (still attached to b's graph) and the initial state, or zeros
        final = initial_state.clone() if initial_state is not None else b.new_zeros(B, D, dtype=state_dtype)
        return b[:, :0].clone(), final
    h0 = initial_state.to(acc) if initial_state is not None else None
    chunk = int(chunk_size) if chunk_size else default_chunk(T)
    if chunk < 1:
        raise ValueError(f"diagonal_scan: chunk_size must be >= 1, got {chunk_size}")
    scan = chunked_scan if torch.compiler.is_compiling() else _ChunkedScan.apply
    h, final = scan(a.to(acc), b.to(acc), h0, False, chunk)
    return h.to(out_dtype), final.to(state_dtype)


def diagonal_scan_hillis_steele(a: torch.Tensor, b: torch.Tensor, initial_state: torch.Tensor | None = None):
    """The previous torch path: Hillis-Steele prefix over the affine maps, log2(T) full-length
    passes, differentiated by autograd. Kept for the benchmark's before/after comparison."""
    a, b, initial_state = check_scan(a, b, initial_state)
    out_dtype = b.dtype
    acc = acc_dtype(b.dtype)
    a = a.to(acc)
    b = b.to(acc)
    if initial_state is not None:
        b = torch.cat([b[:, :1] + a[:, :1] * initial_state.to(acc).unsqueeze(1), b[:, 1:]], dim=1)
    T = b.shape[1]
    step = 1
    while step < T:
        b = torch.cat([b[:, :step], b[:, step:] + a[:, step:] * b[:, :-step]], dim=1)
        a = torch.cat([a[:, :step], a[:, step:] * a[:, :-step]], dim=1)
        step *= 2
    if T == 0:
        final = initial_state.to(acc) if initial_state is not None else b.new_zeros(b.shape[0], b.shape[2])
    else:
        final = b[:, -1]
    return b.to(out_dtype), final.to(out_dtype)

