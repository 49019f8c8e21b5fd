"""The states entering the scan's chunks, from the chunks' affine summaries, as a parallel tree.

Chunk c maps the state entering it, s, to the state leaving it, P_c * s + E_c (P, E: [B, N, D]
fp32, from the summary kernel). The state entering chunk c composes the maps of the chunks before
it and applies them to the initial state:
    forward:  S_0 = init,      S_{c+1} = P_c S_c + E_c
    reverse:  S_{N-1} = init,  S_{c-1} = P_c S_c + E_c      (the backward pass: carries from the right)
Maps compose associatively, (p1, e1) then (p2, e2) = (p1 p2, p2 e1 + e2), so S is an exclusive
prefix scan, computed as a tree. Position i is chunk i (chunk N-1-i in reverse).
  * one level: tiles of TILE consecutive positions, one program per (channel block, tile, batch
    row); the program scans its tile with tl.associative_scan (log2 TILE combining steps on a GPU)
    and writes S from the tile's start state;
  * more than one tile: a first launch writes each tile's composed map, a sequence of cdiv(N, TILE)
    maps whose start states come from the same procedure one level up, then every tile is
    scanned from its start state.
No program walks the chunks one after another: ceil(log_TILE N) levels, each O(log TILE) deep.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

CARRY_TILE = 128     # positions per tile: one level covers up to 128 chunks
CARRY_ELEMS = 2048   # tile positions x channels per program


@triton.jit
def _compose(p1, e1, p2, e2):
    """(p1, e1) then (p2, e2): x -> p2 (p1 x + e1) + e2."""
    return p1 * p2, p2 * e1 + e2


@triton.jit
def _carry_kernel(
    p_ptr, e_ptr, start_ptr, s_ptr, tp_ptr, te_ptr,
    N, D,
    REVERSE: tl.constexpr, WRITE_STATES: tl.constexpr, HAS_START: tl.constexpr,
    TILE: tl.constexpr, BLOCK_D: tl.constexpr,
):
    """Scan one tile of maps. WRITE_STATES: write S [B, N, D] at the tile's positions, from the
    tile's start state start[b, tile] ([B, n_tiles, D]; zeros without HAS_START). Otherwise write
    the tile's composed map to (tp, te) [B, n_tiles, D], in position order."""
    pid_d = tl.program_id(0)
    pid_t = tl.program_id(1)
    pid_b = tl.program_id(2)
    n_tiles = tl.cdiv(N, TILE)
    offs = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
    md = offs < D
    i = tl.arange(0, TILE)
    pos = pid_t * TILE + i
    if REVERSE:
        item = N - 1 - pos
        first = N - 1 - pid_t * TILE
        step = -1
    else:
        item = pos
        first = pid_t * TILE
        step = 1
    live = (pos < N)[:, None] & md[None, :]
    rows = (pid_b * N + item).to(tl.int64) * D
    p = tl.load(p_ptr + rows[:, None] + offs[None, :], mask=live, other=1.0)  # padding: the identity map
    e = tl.load(e_ptr + rows[:, None] + offs[None, :], mask=live, other=0.0)
    pc, ec = tl.associative_scan((p, e), 0, _compose)  # row i: positions [tile start, i] composed
    tile_row = (pid_b * n_tiles + pid_t).to(tl.int64) * D
    if WRITE_STATES:
        if HAS_START:
            s = tl.load(start_ptr + tile_row + offs, mask=md, other=0.0).to(tl.float32)
        else:
            s = tl.zeros([BLOCK_D], tl.float32)
        # the first position enters with s; position i + 1 with the composed map of [start, i] applied to s
        tl.store(s_ptr + (pid_b * N + first).to(tl.int64) * D + offs, s, mask=md)
        nxt = rows + step * D
        ok = ((pos + 1 < N) & (i < TILE - 1))[:, None] & md[None, :]
        tl.store(s_ptr + nxt[:, None] + offs[None, :], pc * s[None, :] + ec, mask=ok)
    else:
        # the tile's map is its last row (padding rows are the identity); the other rows are masked
        last = (i == TILE - 1)[:, None] & md[None, :]
        dst = tile_row + offs[None, :] + 0 * i[:, None]
        tl.store(tp_ptr + dst, pc, mask=last)
        tl.store(te_ptr + dst, ec, mask=last)


def chunk_start_states(p, e, init, reverse: bool, *, empty, tile: int | None = None):
    """p, e: [B, N, D] fp32 chunk maps; init: [B, D] (any float dtype) or None (zeros). Returns
    S [B, N, D] fp32, S[:, c] the state entering chunk c (from the right when reverse).
    empty(shape, dtype=, device=) allocates every buffer; tile overrides CARRY_TILE (a power of two)."""
    B, N, D = p.shape
    tile = min(tile or CARRY_TILE, triton.next_power_of_2(N))
    block_d = max(1, min(triton.next_power_of_2(D), CARRY_ELEMS // tile))
    n_tiles = triton.cdiv(N, tile)
    grid = (triton.cdiv(D, block_d), n_tiles, B)
    s = empty((B, N, D), dtype=torch.float32, device=p.device)
    start = init
    if n_tiles > 1:
        tp = empty((B, n_tiles, D), dtype=torch.float32, device=p.device)
        te = empty((B, n_tiles, D), dtype=torch.float32, device=p.device)
        _carry_kernel[grid](p, e, p, s, tp, te, N, D, REVERSE=reverse, WRITE_STATES=False, HAS_START=False,
                            TILE=tile, BLOCK_D=block_d, num_warps=4)
        start = chunk_start_states(tp, te, init, False, empty=empty, tile=tile)
    _carry_kernel[grid](p, e, start if start is not None else s, s, s, s, N, D, REVERSE=reverse, WRITE_STATES=True,
                        HAS_START=start is not None, TILE=tile, BLOCK_D=block_d, num_warps=4)
    return s
