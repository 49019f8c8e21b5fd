"""The training-throughput bench: bytes/s, ms/step and parameters of presets, as a `run`.

Each preset runs the trainer's step (forward with per-row sampled training thresholds, backward,
gradient clipping, AdamW) on the same batch shape; a few untimed warm-up steps come first and a row
reports the median of the timed steps. Step times wait for the device; model FLOPs come from
scratchpad.accounting (forward x 3), MFU is given where the GPU's peak is known (train/hardware.py).
`run(...)` returns a `TrainBenchResult`; it parses nothing and prints nothing (`on_row` sees each
row as it is measured). The command is eval/bench/train_cli.py.
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np
import torch

from scratchpad import ModelConfig, build_model
from scratchpad.accounting import training_flops as train_flops
from scratchpad.precision import autocast, compile_module
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
    """The first n bytes of data_dir/train.bin, or n bytes of synthetic text without a folder."""
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


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's ("x86_64 CPU" where the processor has no name)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or platform.machine()} CPU"


def row_label(row: dict) -> str:
    """The preset, with " tau=inf" for a scratchpad preset's row trained without scratchpads."""
    plain = ModelConfig.preset(row["preset"]).scratchpad and not row["scratchpads"]
    return f"{row['preset']} tau=inf" if plain else row["preset"]


@dataclass
class TrainBenchResult:
    """rows: one `bench_preset` row per (preset, scratchpads) in the order measured."""
    device: torch.device
    threads: int
    batch: int
    seq_len: int
    warmup: int
    steps: int
    dtype: str
    compile: bool
    rows: list[dict] = field(default_factory=list)
    finished: str = ""
    load_avg_1m: float | None = None

    def json(self) -> dict:
        """The command's JSON line."""
        return dict(bench="train", date=self.finished, device=str(self.device), device_name=device_name(self.device),
                    threads=self.threads, batch=self.batch, seq_len=self.seq_len, warmup=self.warmup, steps=self.steps,
                    dtype=self.dtype, compile=self.compile, torch=torch.__version__, load_avg_1m=self.load_avg_1m,
                    results=self.rows)


def run(names: list[str], data: np.ndarray, batch: int, seq_len: int, warmup: int, steps: int, device: torch.device,
        dtype: str = "fp32", compile: bool = False, plain: bool = True, on_row=lambda row: None) -> TrainBenchResult:
    """Every preset in names on data at torch's current thread count; plain=True adds a tau = inf row
    (no scratchpads: what the trunk costs alone) for each scratchpad preset, after all the others."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    res = TrainBenchResult(device, torch.get_num_threads(), batch, seq_len, warmup, steps, dtype, compile)
    runs = [(n, True) for n in names]
    if plain:
        runs += [(n, False) for n in names if ModelConfig.preset(n).scratchpad]
    for n, sp in runs:
        res.rows.append(bench_preset(n, data, batch, seq_len, warmup, steps, device, scratchpads=sp, dtype=dtype,
                                     compiled=compile))
        on_row(res.rows[-1])
    res.finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    res.load_avg_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return res
