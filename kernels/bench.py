"""Scan/step kernel benchmark, measured by `run` and `run_sweep`, which print nothing and return
every number (their command line, `scratchpad bench kernels`, is eval/bench/kernels.py: it renders
the tables; kernels import nothing of the rest of the project).

For every shape [B, T, D] it times the diagonal scan forward, and forward+backward, for each
implementation that runs here:
  triton        kernels.scan_triton (CUDA only), with the launch plan of kernels/scan_plan.py
  torch         the chunked torch path (kernels.scan_chunked.diagonal_scan_chunked)
  torch.compile torch.compile of that path
  hillis-steele the previous torch path (log2(T) full-length passes): the "before" of the chunked one
  fla-hgrn      fla-core's fused_recurrent_hgrn / chunk_hgrn (CUDA, and only if `fla` imports);
                HGRN's recurrence is h = exp(g) * h + x, so it is fed g = log(a)
and reports the median time, the bytes the op must move at least (fwd: read a, b, write h;
fwd+bwd: that plus read a, h, dh and write da, db), the achieved bytes/s, and that as a fraction
of the copy bandwidth measured in the same run (a large device-to-device copy, counted as read +
write). Then the scratch step (scratch_step) latency at batch 1..64.
The dtype is fp32 by default: the model's SSM layers launch fp32 scans (bf16 is a flag).

`sweep` (--sweep, CUDA) times every candidate launch plan of the Triton scan, forward+backward,
per shape, and keeps the fastest: the TABLES entry of kernels/scan_plan.py for this device.

Times: CUDA events on a GPU, time.perf_counter on CPU (where there is no Triton column).
"""
from __future__ import annotations

import functools
import platform
import statistics
import time

import torch

from kernels.scan_chunked import diagonal_scan_chunked, diagonal_scan_hillis_steele
from kernels.scan_plan import Plan, Row
from kernels.step_torch import scratch_step_torch

FULL_SHAPES = [(8, T, D) for T in (1024, 4096, 16384) for D in (512, 2048)]
# a sweep's shapes: the model's trunk and local scans (D 256..1024, T 256..4096), and long contexts
SWEEP_SHAPES = [(B, T, D) for B in (1, 8) for T in (256, 1024, 4096, 16384) for D in (256, 1024, 2048)]
SWEEP_BLOCKS = (32, 64, 128, 256)
SWEEP_CHUNKS = (64, 128, 256, 512, 1024, 2048)
QUICK_SHAPES = [(8, 256, 128), (8, 1024, 512)]
STEP_BATCHES = [1, 2, 4, 8, 16, 32, 64]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class Timer:
    """Median wall time of fn(): CUDA events on a GPU, perf_counter on CPU."""

    def __init__(self, device: torch.device, warmup: int, reps: int, budget_s: float):
        self.device, self.warmup, self.reps, self.budget_s = device, warmup, reps, budget_s

    def __call__(self, fn) -> float:
        cuda = self.device.type == "cuda"
        for _ in range(self.warmup):
            fn()
        if cuda:
            torch.cuda.synchronize(self.device)
        times = []
        start_all = time.perf_counter()
        for _ in range(self.reps):
            if cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                fn()
                e.record()
                e.synchronize()
                times.append(s.elapsed_time(e) / 1e3)
            else:
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            if time.perf_counter() - start_all > self.budget_s and len(times) >= 3:
                break
        return statistics.median(times)


def copy_bandwidth(device: torch.device, nbytes: int, timer: Timer) -> float:
    """Bytes/s of a large copy, counting read + write."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    t = timer(lambda: dst.copy_(src))
    return 2 * src.numel() * 4 / t


def _fla():
    try:
        from fla.ops.hgrn import chunk_hgrn, fused_recurrent_hgrn
    except Exception:  # noqa: BLE001 -- any import failure means: no column
        return None
    return {"fla-hgrn-fused": fused_recurrent_hgrn, "fla-hgrn-chunk": chunk_hgrn}


def _same(a, b):
    return a, b


def _triton_plan(B, T, D, device) -> dict:
    from kernels.scan_triton import resolve_plan

    return resolve_plan(B, T, D, device)._asdict()


def scan_impls(device: torch.device, compile_torch: bool):
    """name -> (prepare, fn): prepare(a, b) makes fn's arguments outside the timed region;
    fn(*args) returns h, or a tuple whose first element is h."""
    impls = {}
    if device.type == "cuda":
        from kernels.scan_triton import diagonal_scan_triton

        impls["triton"] = (_same, diagonal_scan_triton)
    impls["torch"] = (_same, diagonal_scan_chunked)
    if compile_torch:
        impls["torch.compile"] = (_same, torch.compile(diagonal_scan_chunked))
    impls["hillis-steele"] = (_same, diagonal_scan_hillis_steele)
    if device.type == "cuda":
        for name, fn in (_fla() or {}).items():
            impls[name] = (lambda a, b: (b, torch.log(a)), fn)  # h = exp(g) * h + x with g = log(a)
    return impls


def _fwd_bwd(fn, leaves, dh):
    out = fn(*leaves)
    h = out[0] if isinstance(out, tuple) else out
    torch.autograd.backward(h, dh)
    for x in leaves:
        x.grad = None


def bench_scan(shapes, dtype, device, timer, compile_torch, bandwidth, log):
    rows = []
    impls = scan_impls(device, compile_torch)
    elt = torch.tensor([], dtype=dtype).element_size()
    for B, T, D in shapes:
        g = torch.Generator(device="cpu").manual_seed(0)
        a = (torch.rand(B, T, D, generator=g) * 0.5 + 0.5).to(device=device, dtype=dtype)
        b = torch.randn(B, T, D, generator=g).to(device=device, dtype=dtype)
        dh = torch.randn(B, T, D, generator=g).to(device=device, dtype=dtype)
        n = B * T * D
        for name, (prepare, fn) in impls.items():
            for op, min_bytes in (("fwd", 3 * n * elt), ("fwd+bwd", 8 * n * elt)):
                rec = {"op": f"scan {op}", "impl": name, "B": B, "T": T, "D": D, "dtype": str(dtype).split(".")[-1]}
                if name == "triton":
                    rec["plan"] = _triton_plan(B, T, D, device)
                try:
                    args = prepare(a, b)
                    if op == "fwd":
                        with torch.no_grad():
                            t = timer(functools.partial(fn, *args))
                    else:
                        leaves = [x.detach().requires_grad_() for x in args]
                        t = timer(functools.partial(_fwd_bwd, fn, leaves, dh))
                    rec.update(ms=t * 1e3, min_bytes=min_bytes, gbps=min_bytes / t / 1e9, frac_of_copy=min_bytes / t / bandwidth)
                except Exception as e:  # noqa: BLE001 -- a failing column is reported, not fatal
                    msg = str(e).splitlines()[0][:200] if str(e) else ""
                    rec.update(ms=None, error=f"{type(e).__name__}: {msg}")
                rows.append(rec)
                log(rec)
    return rows


def step_impls(device):
    impls = {}
    if device.type == "cuda":
        from kernels.ops import scratch_step_triton

        impls["triton"] = scratch_step_triton
    impls["torch"] = scratch_step_torch
    return impls


def bench_steps(D, dtype, device, timer):
    rows = []
    for name, scratch in step_impls(device).items():
        for N in STEP_BATCHES:
            g = torch.Generator(device="cpu").manual_seed(N)
            a = torch.rand(N, D, generator=g).to(device=device, dtype=dtype)
            b = torch.randn(N, D, generator=g).to(device=device, dtype=dtype)
            states = torch.randn(N, D, generator=g).to(device=device, dtype=dtype)
            rec = {"op": "scratch_step", "impl": name, "N": N, "D": D, "dtype": str(dtype).split(".")[-1]}
            with torch.no_grad():
                rec["us"] = timer(functools.partial(scratch, a, b, states)) * 1e6
            rows.append(rec)
    return rows


def sweep_candidates(T: int, D: int):
    """The plans a sweep times: BLOCK_D up to the widest useful for D, 1..4 warps (at most one per
    32 channels), one chunk or chunks of 64..2048 rows."""
    widest = max(16, min(max(SWEEP_BLOCKS), 1 << max(0, D - 1).bit_length()))
    chunks = [T] + [c for c in SWEEP_CHUNKS if c < T]
    for bd in sorted({min(b, widest) for b in SWEEP_BLOCKS}):
        for w in (1, 2, 4):
            if w * 32 <= max(bd, 32):
                yield from (Plan(c, bd, w) for c in chunks)


def sweep(shapes, time_plan, log=lambda line: None) -> list[Row]:
    """For every shape, time_plan((B, T, D), plan) -> seconds for every candidate plan; the
    fastest plan per shape as a plan-table Row. A candidate that fails is logged and skipped."""
    rows = []
    for B, T, D in shapes:
        best = None
        for plan in sweep_candidates(T, D):
            try:
                t = time_plan((B, T, D), plan)
            except Exception as e:  # noqa: BLE001 -- e.g. out of resources: not a candidate
                log(f"  {B}x{T}x{D} {plan}: failed, {type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}")
                continue
            if best is None or t < best[0]:
                best = (t, plan)
        if best is None:
            raise RuntimeError(f"sweep: every candidate plan failed at {B}x{T}x{D}")
        rows.append(Row(B, T, D, *best[1], ms=round(best[0] * 1e3, 4)))
        log(f"  {rows[-1]}")
    return rows


def run_sweep(shapes, dtype_name: str | None = None, device=None, reps: int = 10, warmup: int = 2, budget: float = 5.0,
              on_ready=lambda head: None, log=lambda line: None) -> dict:
    """Time every candidate plan of the Triton scan (forward+backward) on this GPU; -> the per-shape
    winners (`rows`, plan-table Row fields) with their bandwidth against the copy bandwidth.
    on_ready(record so far) once the copy bandwidth is measured; log(line) for each shape's winner
    and each failed candidate."""
    from kernels.scan_triton import diagonal_scan_triton

    device = torch.device(device or "cuda")
    dtype = DTYPES[dtype_name or "fp32"]
    timer = Timer(device, warmup, reps, budget)
    bw = copy_bandwidth(device, 1 << 30, Timer(device, 2, 5, 60))
    props = torch.cuda.get_device_properties(device)
    rec = {"bench": "kernels-sweep", "device": props.name, "n_sm": props.multi_processor_count, "torch": torch.__version__,
           "dtype": str(dtype).split(".")[-1], "copy_bandwidth_Bps": bw}
    on_ready(dict(rec))
    current = {}

    def time_plan(shape, plan):
        if current.get("shape") != shape:
            current.clear()
            g = torch.Generator(device="cpu").manual_seed(0)
            a = (torch.rand(*shape, generator=g) * 0.5 + 0.5).to(device=device, dtype=dtype).requires_grad_()
            b = torch.randn(*shape, generator=g).to(device=device, dtype=dtype).requires_grad_()
            current.update(shape=shape, leaves=[a, b], dh=torch.randn(*shape, generator=g).to(device=device, dtype=dtype))
        fn = functools.partial(diagonal_scan_triton, chunk_size=plan.chunk, block_d=plan.block_d, num_warps=plan.num_warps)
        return timer(functools.partial(_fwd_bwd, fn, current["leaves"], current["dh"]))

    elt = torch.tensor([], dtype=dtype).element_size()
    rec["rows"] = [dict(r._asdict(), gbps=8 * r.B * r.T * r.D * elt / r.ms / 1e6,
                        frac_of_copy=8 * r.B * r.T * r.D * elt / (r.ms / 1e3) / bw) for r in sweep(shapes, time_plan, log=log)]
    return rec


def run(shapes, dtype_name: str | None = None, device=None, quick: bool = False, reps: int | None = None,
        warmup: int | None = None, budget: float | None = None, step_d: int | None = None, compile_torch: bool = True,
        steps: bool = True, scan: bool = True, on_ready=lambda head: None, on_scan_row=lambda row: None) -> dict:
    """Run the benchmark and return every number (the JSON record). None picks the defaults: fp32
    (the model's scan dtype), reps 5 quick / 20 CUDA / 7 CPU, warmup 1 quick / 3, budget 5 s quick /
    30 s per cell, step D 512 quick / 2048. on_ready(head) once the copy bandwidth is measured (head:
    device, cuda, torch, copy_bandwidth_Bps, fla: whether fla-core imports); on_scan_row(row) as each
    scan cell is timed."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    dtype = DTYPES[dtype_name or "fp32"]
    reps = reps or (5 if quick else (20 if cuda else 7))
    warmup = warmup if warmup is not None else (1 if quick else 3)
    timer = Timer(device, warmup, reps, budget or (5.0 if quick else 30.0))
    step_d = step_d or (512 if quick else 2048)

    bw = copy_bandwidth(device, (1 << 30) if cuda else (256 << 20 if not quick else 64 << 20), Timer(device, 2, 5 if cuda else 3, 60))
    dev_name = torch.cuda.get_device_name(device) if cuda else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    on_ready({"device": dev_name, "cuda": cuda, "torch": torch.__version__, "copy_bandwidth_Bps": bw,
              "fla": _fla() is not None})
    scan_rows = bench_scan(shapes, dtype, device, timer, compile_torch, bw, on_scan_row) if scan else []
    step_rows = bench_steps(step_d, dtype, device, timer) if steps else []
    return {
        "bench": "kernels", "device": dev_name, "cuda": cuda, "torch": torch.__version__,
        "copy_bandwidth_Bps": bw, "dtype": str(dtype).split(".")[-1], "quick": bool(quick),
        "timing": "cuda events" if cuda else "perf_counter", "reps": reps,
        "scan": scan_rows, "steps": step_rows,
    }
