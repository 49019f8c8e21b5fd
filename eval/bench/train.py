"""`scratchpad bench train`: training throughput of the presets (bytes/s, ms/step, parameters).

Each preset runs the trainer's step (forward with per-row sampled training thresholds, backward,
gradient clipping, AdamW) on the same batch shape: by default the study's shape, seq 1024 and
batch 4. A few untimed warm-up steps come first; the table reports the median of the timed steps.
The last line of output is one JSON object with every number. Scratchpad presets get a second
row trained with tau = inf (no scratchpads): an untrained aux head has high entropy everywhere, so
the sampled training thresholds fire scratchpads at most bytes and that row shows the patch-only
cost. Step times of untrained models also reflect untrained patchers (the entropy patcher ends a
patch at almost every byte until its aux head learns; see the B/patch column).

    scratchpad bench train                       # byte, the six study-* presets, sp-fixed-p16
    scratchpad bench train --quick               # seq 256, 1 warm-up + 3 timed steps
    scratchpad bench train --presets byte,sp-fixed-p4 --batch-size 8 --steps 10
    scratchpad bench train --presets sp-fixed-p16 --no-plain --compile --seq-len 256 --warmup 5 --steps 45

--compile trains every row twice from one initialisation, eager and torch.compile, alternating step
by step on the same seeded batches (machine load hits both alike): the row gains
the compiled bytes/s, the speedup, the first (compiling) step's seconds and the largest relative
difference between the two runs' per-step losses (warm-up steps included). --dtype bf16 trains
under bf16 autocast (the default on CUDA). Step times wait for the device; model FLOPs come from
scratchpad.accounting (forward x 3), MFU is given where the GPU's peak is known (train/hardware.py).
"""
from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone

import numpy as np
import torch

from scratchpad import ModelConfig, UserError, build_model
from scratchpad.accounting import training_flops as train_flops
from scratchpad.flags import Parser, add_threads_flag
from scratchpad.precision import DTYPES, autocast, check_dtype, compile_module, compile_problem
from train.hardware import peak_flops, peak_memory_bytes, reset_peak_memory, synchronize
from train.loss import LossModule
from train.optim import make_optimizer

DEFAULT_PRESETS = ["byte", "study-A-fixed-mean", "study-B-attn-pool", "study-C-soft-boundary", "study-D-entropy",
                   "study-E-full-bytes", "study-F-gru-local-dec", "sp-fixed-p16"]


def synthetic_text(n: int, seed: int = 0) -> np.ndarray:
    """Word-like ASCII bytes (Zipf-distributed words, spaces, punctuation, newlines): the patchers
    and entropy triggers see text-shaped input without any download."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"etaoinshrdlcumwfgypbvkjxqz", np.uint8)
    lp = 1.0 / np.arange(1, 27) ** 0.9
    lp /= lp.sum()
    vocab = [bytes(rng.choice(letters, size=rng.integers(1, 10), p=lp)) for _ in range(2000)]
    wp = 1.0 / np.arange(1, len(vocab) + 1)
    wp /= wp.sum()
    out = bytearray()
    while len(out) < n:
        for w in rng.choice(len(vocab), size=256, p=wp):
            out += vocab[w]
            r = rng.random()
            out += b". " if r < 0.05 else b",\n" if r < 0.07 else b" "
    return np.frombuffer(bytes(out[:n]), np.uint8)


def load_bytes(data_dir: str | None, n: int) -> np.ndarray:
    if not data_dir:
        return synthetic_text(n)
    from train.data import ByteFile

    f = ByteFile(os.path.join(data_dir, "train.bin"), n)
    return np.asarray(f.data[:n])


class _Run:
    """One model + optimizer being benchmarked: eager, or under torch.compile."""

    def __init__(self, cfg: ModelConfig, device, dtype: str, compiled: bool):
        torch.manual_seed(0)
        self.model = build_model(cfg).to(device).train()
        self.opt = make_optimizer(self.model, 1e-3, 0.1, device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.fn = compile_module(LossModule(self.model)) if compiled else LossModule(self.model)
        self.device, self.dtype, self.compiled = device, dtype, compiled
        self.times, self.losses, self.scratch, self.commits, self.first_s = [], [], 0, 0, None

    def step(self, w, tau, i: int, timed: bool):
        torch.manual_seed(1000 + i)  # the model's own randomness, the same in every run
        synchronize(self.device)
        t0 = time.perf_counter()
        with autocast(self.device, self.dtype):
            loss, stats = self.fn(w[:, :-1], w[:, 1:], tau)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        synchronize(self.device)
        dt = time.perf_counter() - t0
        self.first_s = dt if self.first_s is None else self.first_s
        self.losses.append(float(loss.detach()))
        if not math.isfinite(self.losses[-1]):
            raise RuntimeError(f"{self.model.cfg.name}: non-finite loss in the benchmark")
        if timed:
            self.times.append(dt)
            self.scratch += int(stats[2])
            self.commits += int(stats[3])


def bench_preset(name: str, data: np.ndarray, batch: int, seq_len: int, warmup: int, steps: int, device,
                 scratchpads: bool = True, dtype: str = "fp32", compiled: bool = False) -> dict:
    """scratchpads=False trains with threshold None (plain patching) even for a scratchpad config.
    compiled=True also trains a torch.compile'd copy from the same initialisation on the same
    steps, alternating step by step with the eager one (so machine load hits both alike); the row
    gains the compiled numbers and the loss agreement (see `compare`)."""
    cfg = ModelConfig.preset(name)
    T = min(seq_len, cfg.max_seq_len)
    reset_peak_memory(device)
    runs = [_Run(cfg, device, dtype, False)] + ([_Run(cfg, device, dtype, True)] if compiled else [])
    rng = np.random.default_rng(1)
    for i in range(warmup + steps):
        offs = rng.integers(0, len(data) - T - 1, size=batch)
        w = torch.from_numpy(np.stack([data[o : o + T + 1] for o in offs]).astype(np.int64)).to(device)
        tau = runs[0].model.sample_thresholds(batch, torch.Generator().manual_seed(i)).to(device) if scratchpads else None
        for r in runs:
            r.step(w, tau, i, timed=i >= warmup)
    rows = [_row(name, cfg, r, batch, T, steps, device, scratchpads) for r in runs]
    del runs
    gc.collect()
    if compiled:
        rows[0].update(compare(rows[0], rows[1]))
        if "peak_mem_bytes" in rows[0]:  # both models were alive: not one model's peak
            rows[0]["peak_mem_bytes_eager_and_compiled"] = rows[0].pop("peak_mem_bytes")
    return rows[0]


def _row(name, cfg, r: _Run, batch: int, T: int, steps: int, device, scratchpads: bool) -> dict:
    med = statistics.median(r.times)
    flops = train_flops(cfg, batch, T, r.commits / steps, r.scratch / steps)
    peak, mem = peak_flops(device, r.dtype), peak_memory_bytes(device)
    row = dict(preset=name, scratchpads=bool(cfg.scratchpad and scratchpads), params=sum(p.numel() for p in r.params),
               seq_len=T, batch=batch, dtype=r.dtype, compiled=r.compiled, ms_per_step=round(1000 * med, 2),
               ms_per_step_mean=round(1000 * statistics.fmean(r.times), 2), ms_per_step_min=round(1000 * min(r.times), 2),
               bytes_per_s=round(batch * T / med, 1), bytes_per_patch=round(steps * batch * T / max(1, r.commits), 3),
               scratch_rate=round(r.scratch / (steps * batch * T), 4), model_flops_per_step=flops,
               first_step_s=round(r.first_s, 3), losses=r.losses)
    if peak:
        row["mfu"] = round(flops / med / peak, 5)
    if mem is not None:
        row["peak_mem_bytes"] = mem
    return row


def compare(eager: dict, comp: dict) -> dict:
    """What --compile adds to an eager row: the compiled numbers, the speedup, the loss agreement."""
    diffs = [abs(a - b) / max(abs(a), 1e-12) for a, b in zip(eager["losses"], comp["losses"])]
    return dict(compiled_bytes_per_s=comp["bytes_per_s"], compiled_ms_per_step=comp["ms_per_step"],
                compile_first_step_s=comp["first_step_s"], compile_speedup=round(comp["bytes_per_s"] / eager["bytes_per_s"], 3),
                loss_steps_compared=len(diffs), loss_max_rel_diff=max(diffs) if diffs else None,
                **({"compiled_mfu": comp["mfu"]} if "mfu" in comp else {}))


def main(argv=None) -> int:
    p = Parser(prog="scratchpad bench train", description="Training throughput of the presets.")
    p.add_argument("--presets", default=",".join(DEFAULT_PRESETS), help="comma-separated preset names")
    p.add_argument("--batch-size", type=int, default=4, help="sequences per step")
    p.add_argument("--seq-len", type=int, default=None, help="default 1024 (256 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps per preset (default 2, 1 with --quick)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per preset (default 5, 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="shorter sequences and fewer steps")
    p.add_argument("--no-plain", action="store_true", help="skip the extra tau=inf (no scratchpads) row of scratchpad presets")
    p.add_argument("--data", default=None, help="corpus folder to read train.bin from (default: synthetic text)")
    add_threads_flag(p)
    p.add_argument("--device", choices=["cpu", "cuda"], default=None)
    p.add_argument("--dtype", choices=list(DTYPES), default=None, help="default bf16 autocast on CUDA, fp32 on CPU")
    p.add_argument("--compile", action="store_true", help="also run every row under torch.compile on the same steps: "
                   "bytes/s of both, the speedup, and the largest relative difference of their per-step losses")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    seq_len = a.seq_len or (256 if a.quick else 1024)
    warmup = a.warmup if a.warmup is not None else (1 if a.quick else 2)
    steps = a.steps if a.steps is not None else (3 if a.quick else 5)
    for flag, v, lo in (("--batch-size", a.batch_size, 1), ("--seq-len", seq_len, 2), ("--warmup", warmup, 0),
                        ("--steps", steps, 1)):
        if v < lo:
            raise UserError(f"{flag} {v}: must be >= {lo}")
    names = [n.strip() for n in a.presets.split(",") if n.strip()]
    for n in names:
        ModelConfig.preset(n)  # unknown names fail before anything runs
    kind = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    device = torch.device(kind)
    a.dtype = a.dtype or ("bf16" if kind == "cuda" else "fp32")
    note = check_dtype(a.dtype, device)
    if note:
        print(note, file=sys.stderr)
    if a.compile and compile_problem(device):
        raise UserError(f"--compile: {compile_problem(device)}; run without --compile")
    old_threads = torch.get_num_threads()
    if a.threads:
        torch.set_num_threads(a.threads)
    try:
        return _run(a, names, device, seq_len, warmup, steps)
    finally:
        torch.set_num_threads(old_threads)


def _run(a, names, device, seq_len, warmup, steps) -> int:
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    data = load_bytes(a.data, max(1 << 20, 4 * a.batch_size * (seq_len + 1)))

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"
    print(f"training throughput on {dev_name}, {torch.get_num_threads()} threads, batch {a.batch_size} x {seq_len} bytes, "
          f"{warmup} warm-up + {steps} timed steps (median), AdamW + clipping"
          + (", bf16 autocast" if a.dtype == "bf16" else ", fp32") + (", eager and torch.compile" if a.compile else ""),
          flush=True)
    hdr = f"{'preset':<26}{'params':>9}{'seq':>6}{'ms/step':>10}{'bytes/s':>11}{'vs byte':>9}{'B/patch':>9}{'scratch':>9}"
    if a.compile:
        hdr += f"{'compiled':>11}{'speedup':>9}{'loss diff':>11}{'compile s':>11}"
    print(hdr)
    print("-" * len(hdr), flush=True)
    results = []
    runs = [(n, True) for n in names]
    if not a.no_plain:  # scratchpad presets also without scratchpads: what the trunk costs alone
        runs += [(n, False) for n in names if ModelConfig.preset(n).scratchpad]
    for n, sp in runs:
        r = bench_preset(n, data, a.batch_size, seq_len, warmup, steps, device, scratchpads=sp, dtype=a.dtype,
                         compiled=a.compile)
        results.append(r)
        base = next((x for x in results if x["preset"] == "byte"), None)
        rel = f"{r['bytes_per_s'] / base['bytes_per_s']:.2f}x" if base else "-"
        label = n if sp or not ModelConfig.preset(n).scratchpad else f"{n} tau=inf"
        print(f"{label:<26}{r['params'] / 1e6:>8.2f}M{r['seq_len']:>6}{r['ms_per_step']:>10.1f}{r['bytes_per_s']:>11,.0f}"
              f"{rel:>9}{r['bytes_per_patch']:>9.2f}{100 * r['scratch_rate']:>8.1f}%"
              + (f"{r['compiled_bytes_per_s']:>11,.0f}{r['compile_speedup']:>8.2f}x{r['loss_max_rel_diff']:>11.1e}"
                 f"{r['compile_first_step_s']:>11.1f}" if a.compile else ""), flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(json.dumps(dict(bench="train", date=datetime.now(timezone.utc).isoformat(timespec="seconds"), device=str(device),
                          device_name=dev_name, threads=torch.get_num_threads(), batch=a.batch_size, seq_len=seq_len,
                          warmup=warmup, steps=steps, dtype=a.dtype, compile=a.compile, torch=torch.__version__,
                          load_avg_1m=load, results=results)))
    return 0


if __name__ == "__main__":
    from scratchpad.errors import run_cli

    sys.exit(run_cli(main))
