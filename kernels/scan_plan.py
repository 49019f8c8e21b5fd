"""Launch plans of the Triton scan: chunk length along T, channels per program and warps.

`launch_plan(B, T, D, device)` answers from TABLES, keyed by the CUDA device name: the rows a
sweep wrote (`scratchpad bench kernels --sweep` times every candidate plan on the GPU at hand, per
shape, and prints the rows of its device in this file's format). A shape between the rows takes
the nearest row (in log B*D and log T) and keeps its number of chunks. A device without a table
gets `occupancy_plan`, the reasoning below, with its own SM count.

THE H100 ROWS BELOW ARE NOT MEASURED: no GPU has run these kernels yet. They are what
`occupancy_plan` derives for an H100 SXM (132 SMs), written out as data so that the first GPU
session replaces them with measured rows (a derived row has ms=None; a measured row its time).

Reasoning (`occupancy_plan`). A program sweeps its rows one after another and keeps one group of
4 rows of a and b in flight: BLOCK_D * 8 * 4 B = 4 KiB at BLOCK_D = 128 in fp32. Little's law at
~3.3 TB/s and ~0.7 us latency wants ~2.3 MB in flight, ~18 KiB per SM: at least ~5 programs per
SM; aim for PROGRAMS_PER_SM = 8 (one-warp programs: far under the 32 blocks an SM holds).
One chunk reads a and b once (3 passes over memory); several chunks read them twice (5 passes,
plus the small carry). So first fill the GPU with one chunk by narrowing BLOCK_D (128 -> 64 -> 32:
a warp still loads >= 128 contiguous bytes a row); failing that, keep BLOCK_D = 128 and cut T into
enough chunks of >= MIN_CHUNK rows (a multiple of 16). One warp per 128 channels: 4 fp32 per
thread, 16-byte loads.
"""
from __future__ import annotations

import functools
import json
import math
from typing import NamedTuple

import torch

PROGRAMS_PER_SM = 8
MIN_CHUNK = 64
MAX_BLOCK_D = 128


class Plan(NamedTuple):
    chunk: int       # rows of T per program (T itself: one chunk, no carry)
    block_d: int     # channels per program, a power of two
    num_warps: int


class Row(NamedTuple):
    """One measured (or derived) shape of a sweep and the plan chosen for it."""
    B: int
    T: int
    D: int
    chunk: int
    block_d: int
    num_warps: int
    ms: float | None  # forward + backward median of the chosen plan; None: derived, not measured


class Table(NamedTuple):
    n_sm: int
    source: str
    rows: tuple[Row, ...]


def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def default_block_d(D: int) -> int:
    """The widest block for D channels: next power of two, within [16, MAX_BLOCK_D]."""
    return max(16, min(MAX_BLOCK_D, _next_pow2(D)))


def warps_for(block_d: int) -> int:
    """One warp per 128 channels (4 fp32 lanes per thread), at most 4."""
    return max(1, min(4, block_d // 128))


def chunk_for(T: int, n_chunks: int) -> int:
    """Rows per chunk for at least n_chunks chunks of T (fewer where that would cut them under
    MIN_CHUNK rows): T itself for one, else a multiple of 16."""
    if n_chunks <= 1:
        return max(T, 1)
    return min(max(T, 1), max(MIN_CHUNK, T // n_chunks // 16 * 16))


def occupancy_plan(B: int, T: int, D: int, n_sm: int) -> Plan:
    """The derived plan (module docstring) for a GPU with n_sm SMs."""
    target = PROGRAMS_PER_SM * n_sm
    widest = default_block_d(D)
    narrowest = max(16, widest // 4)
    bd = widest
    while bd >= narrowest:  # one chunk, if some block width fills the GPU
        if B * -(-D // bd) >= target:
            return Plan(max(T, 1), bd, warps_for(bd))
        bd //= 2
    # chunks: at the widest block, narrowed while even the shortest chunks leave the GPU short
    most_chunks = -(-max(T, 1) // MIN_CHUNK)
    bd = widest
    while bd > narrowest and B * -(-D // bd) * most_chunks < target:
        bd //= 2
    return Plan(chunk_for(T, -(-target // (B * -(-D // bd)))), bd, warps_for(bd))


# Rows per device: the shapes of a sweep and the plan it chose. The H100 rows are derived (ms=None), see above.
TABLES: dict[str, Table] = {
    "NVIDIA H100 80GB HBM3": Table(
        n_sm=132,
        source="derived by occupancy_plan for 132 SMs, NOT measured: replace with `bench kernels --sweep` rows",
        rows=(
            Row(B=1, T=256, D=256, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=256, D=1024, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=256, D=2048, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=1024, D=256, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=1024, D=1024, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=1024, D=2048, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=4096, D=256, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=4096, D=1024, chunk=112, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=4096, D=2048, chunk=112, block_d=64, num_warps=1, ms=None),
            Row(B=1, T=16384, D=256, chunk=112, block_d=32, num_warps=1, ms=None),
            Row(B=1, T=16384, D=1024, chunk=112, block_d=128, num_warps=1, ms=None),
            Row(B=1, T=16384, D=2048, chunk=240, block_d=128, num_warps=1, ms=None),
            Row(B=8, T=256, D=256, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=8, T=256, D=1024, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=8, T=256, D=2048, chunk=80, block_d=32, num_warps=1, ms=None),
            Row(B=8, T=1024, D=256, chunk=64, block_d=32, num_warps=1, ms=None),
            Row(B=8, T=1024, D=1024, chunk=112, block_d=64, num_warps=1, ms=None),
            Row(B=8, T=1024, D=2048, chunk=112, block_d=128, num_warps=1, ms=None),
            Row(B=8, T=4096, D=256, chunk=112, block_d=64, num_warps=1, ms=None),
            Row(B=8, T=4096, D=1024, chunk=240, block_d=128, num_warps=1, ms=None),
            Row(B=8, T=4096, D=2048, chunk=448, block_d=128, num_warps=1, ms=None),
            Row(B=8, T=16384, D=256, chunk=240, block_d=128, num_warps=1, ms=None),
            Row(B=8, T=16384, D=1024, chunk=960, block_d=128, num_warps=1, ms=None),
            Row(B=8, T=16384, D=2048, chunk=1808, block_d=128, num_warps=1, ms=None),
        ),
    ),
}


def plan_from_rows(rows, B: int, T: int, D: int) -> Plan:
    """The nearest row's plan (in log2 B*D + log2 T); at another T its chunk scales with T (about
    the row's number of chunks), a multiple of 16 of at least MIN_CHUNK rows."""
    def dist(r: Row) -> float:
        return abs(math.log2(B * D) - math.log2(r.B * r.D)) + abs(math.log2(T) - math.log2(r.T))

    r = min(rows, key=dist)
    if r.T == T or r.chunk >= r.T:
        chunk = min(r.chunk, T) if r.chunk < r.T else T
    else:
        chunk = min(T, max(MIN_CHUNK, round(r.chunk * T / r.T / 16) * 16))
    return Plan(chunk, r.block_d, r.num_warps)


@functools.lru_cache(maxsize=None)
def _device_info(index: int) -> tuple[str, int]:
    p = torch.cuda.get_device_properties(index)
    return p.name, p.multi_processor_count


def launch_plan(B: int, T: int, D: int, device: torch.device) -> Plan:
    """The plan for a [B, T, D] scan on `device`. Off CUDA (the interpreter runs programs one after
    another) one chunk of the widest block: the fewest programs."""
    if device.type != "cuda":
        bd = default_block_d(D)
        return Plan(max(T, 1), bd, warps_for(bd))
    name, n_sm = _device_info(device.index if device.index is not None else torch.cuda.current_device())
    table = TABLES.get(name)
    if table is not None and table.rows:
        return plan_from_rows(table.rows, B, T, D)
    return occupancy_plan(B, T, D, n_sm)


def format_table(device_name: str, n_sm: int, source: str, rows) -> str:
    """TABLES entry for a device, as Python source to paste above (what --sweep prints)."""
    lines = [f"    {json.dumps(device_name)}: Table(", f"        n_sm={n_sm},",
             f"        source={json.dumps(source)},", "        rows=("]
    lines += [f"            {r!r}," for r in rows]
    lines += ["        ),", "    ),"]
    return "\n".join(lines)
