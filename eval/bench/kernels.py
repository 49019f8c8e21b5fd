"""`scratchpad bench kernels`: scan and step kernel benchmarks (kernels/bench.py measures; this renders).

    scratchpad bench kernels --quick          # CPU-sized shapes, few repetitions
    scratchpad bench kernels --shapes 8x4096x2048 --dtype bf16
    scratchpad bench kernels --sweep          # CUDA: time every launch plan, print the plan table

Scans run in fp32 by default, the dtype the model launches. Prints a table (rows as they finish),
then one JSON line with every number (see kernels/BENCHMARKS.md).
"""
from __future__ import annotations

import datetime
import json
import math
import sys

import torch

from kernels.bench import DTYPES, FULL_SHAPES, QUICK_SHAPES, STEP_BATCHES, SWEEP_SHAPES, run, run_sweep
from kernels.scan_plan import Row, format_table
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, add_threads_flag, describe, int_flag, set_threads


def parse_shapes(text: str) -> list[tuple[int, int, int]]:
    shapes = []
    for part in text.split(","):
        try:
            B, T, D = (int(x) for x in part.lower().split("x"))
        except ValueError:
            raise UserError(f"--shapes: expected BxTxD[,BxTxD...], got {part!r}") from None
        if min(B, T, D) < 1:
            raise UserError(f"--shapes: sizes must be >= 1, got {part!r}")
        shapes.append((B, T, D))
    return shapes


def positive_float(flag: str):
    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise UserError(f"{flag} {text!r}: not a number") from None
        if not v > 0:
            raise UserError(f"{flag} {text}: must be > 0")
        return v
    return parse


SCAN_HEADER = f"{'op':<13} {'impl':<15} {'B':>3} {'T':>6} {'D':>5} {'dtype':>8} {'ms':>10} {'GB/s':>8} {'of copy':>8}"


def fmt_scan_row(r: dict) -> str:
    """One scan cell: time, GB/s and share of the copy bandwidth, or why it failed."""
    if r.get("ms") is None:
        tail = f"{'failed':>10}  {r.get('error', '')[:60]}"
    else:
        tail = f"{r['ms']:>10.3f} {r['gbps']:>8.2f} {100 * r['frac_of_copy']:>7.1f}%"
    return f"{r['op']:<13} {r['impl']:<15} {r['B']:>3} {r['T']:>6} {r['D']:>5} {r['dtype']:>8} {tail}"


def fmt_steps(step_rows: list[dict]) -> str:
    """The scratch-step latency table: a row per batch size, a column per implementation."""
    impls = sorted({r["impl"] for r in step_rows}, reverse=True)
    lines = [f"scratch_step latency, D={step_rows[0]['D']}, {step_rows[0]['dtype']}",
             f"{'N':>4} " + " ".join(f"{i + ' us':>12}" for i in impls)]
    by = {(r["impl"], r["N"]): r["us"] for r in step_rows}
    for N in STEP_BATCHES:
        lines.append(f"{N:>4} " + " ".join(f"{by.get((i, N), math.nan):>12.1f}" for i in impls))
    return "\n".join(lines)


def print_head(head: dict, scan: bool) -> None:
    """The device line, what columns are missing here and why, and the scan table's header."""
    print(f"device: {head['device']}; copy bandwidth {head['copy_bandwidth_Bps'] / 1e9:.2f} GB/s (read + write); "
          f"torch {head['torch']}")
    if not head["cuda"]:
        print("no CUDA: no Triton column; times are time.perf_counter medians")
    if head["cuda"] and not head["fla"]:
        print("fla-core not importable: no fla-hgrn column")
    if scan:
        print(SCAN_HEADER)


def print_sweep(rec: dict) -> None:
    """The sweep's winners per shape, then the kernels/scan_plan.py TABLES entry for this device."""
    for r in rec["rows"]:
        print(f"{r['B']:>3} {r['T']:>6} {r['D']:>5}  chunk {r['chunk']:>5}  block_d {r['block_d']:>3}  warps {r['num_warps']}  "
              f"{r['ms']:>9.3f} ms  {r['gbps']:>8.1f} GB/s  {100 * r['frac_of_copy']:>5.1f}% of copy")
    source = (f"measured: scratchpad bench kernels --sweep, {rec['dtype']} fwd+bwd medians, "
              f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}")
    print("kernels/scan_plan.py TABLES entry for this device:")
    print(format_table(rec["device"], rec["n_sm"], source, [Row(*(r[k] for k in Row._fields)) for r in rec["rows"]]))


def main(argv=None) -> int:
    p = Parser(prog="scratchpad bench kernels", description=describe(__doc__))
    p.add_argument("--quick", action="store_true", help=f"small shapes {QUICK_SHAPES}, few repetitions (for CPU)")
    p.add_argument("--shapes", metavar="BxTxD,...", help=f"shapes instead of the defaults {FULL_SHAPES}")
    p.add_argument("--dtype", choices=sorted(DTYPES), help="scan dtype (default fp32: what the model's SSM layers launch)")
    p.add_argument("--device", help="cuda or cpu (default: cuda if available)")
    p.add_argument("--reps", type=int_flag("--reps"), metavar="N",
                   help="timed repetitions, the median is reported (default 5 with --quick, else 20 on CUDA, 7 on CPU)")
    p.add_argument("--warmup", type=int_flag("--warmup", 0), metavar="N", help="untimed runs per cell (default 1 with --quick, else 3)")
    p.add_argument("--budget", type=positive_float("--budget"), metavar="SECONDS",
                   help="seconds per timed cell before stopping early, at least 3 reps (default 5 with --quick, else 30)")
    add_threads_flag(p)
    p.add_argument("--step-d", type=int_flag("--step-d"), metavar="D", help="D for the scratch-step latency (default 512 with --quick, else 2048)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile column")
    p.add_argument("--no-steps", action="store_true", help="skip the scratch-step latency table")
    p.add_argument("--no-scan", action="store_true", help="skip the scan table")
    p.add_argument("--sweep", action="store_true",
                   help=f"CUDA: time every Triton launch plan per shape (default shapes: {len(SWEEP_SHAPES)} of B 1/8, "
                        "T 256..16384, D 256..2048) and print the kernels/scan_plan.py table for this GPU")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here")
    set_threads(a.threads)
    if a.sweep:
        if device.type != "cuda":
            raise UserError("--sweep times the Triton kernels and needs a CUDA device")
        rec = run_sweep(parse_shapes(a.shapes) if a.shapes else SWEEP_SHAPES, a.dtype, device, a.reps or 10,
                        2 if a.warmup is None else a.warmup, a.budget or 5.0, on_ready=lambda h: print(
                            f"sweep on {h['device']} ({h['n_sm']} SMs), {h['dtype']}, forward+backward; copy bandwidth "
                            f"{h['copy_bandwidth_Bps'] / 1e9:.2f} GB/s (read + write)"), log=print)
        print_sweep(rec)
        print(json.dumps(rec))
        return 0
    shapes = parse_shapes(a.shapes) if a.shapes else (QUICK_SHAPES if a.quick else FULL_SHAPES)
    rec = run(shapes, a.dtype, device, a.quick, a.reps, a.warmup, a.budget, a.step_d, compile_torch=not a.no_compile,
              steps=not a.no_steps, scan=not a.no_scan, on_ready=lambda head: print_head(head, not a.no_scan),
              on_scan_row=lambda r: print(fmt_scan_row(r), flush=True))
    if rec["steps"]:
        print(fmt_steps(rec["steps"]))
    print(json.dumps(rec))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
