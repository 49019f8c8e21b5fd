"""The decode-speed bench: an SP model against the byte-level baseline of equal trunk, as a `run`.

`run(sp, ...)` times `Engine.generate` (prefill excluded) at each batch size and returns a
`GenerateBenchResult`; it parses nothing and prints nothing (`on_cell` sees each cell as it is
timed). At each batch size the SP model's and the baseline's timed runs alternate (best of
`repeats` each), so the machine's drifts hit both alike. The command is eval/bench/generate_cli.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from infer import Engine
from infer.stats import decode_stats, step_stats
from scratchpad import ModelConfig, build_model, load_model
from scratchpad.accounting import byte_baseline
from scratchpad.errors import UserError
from scratchpad.trigger import tau_json

PROMPT = b"The history of the English language begins with the arrival of three Germanic tribes. "
FALLBACK_PRESET = "heavy-p16-aux2"  # the default model's preset


class _Cell:
    """One model at one batch size: its engine (warmed up at full length: with --compile that
    compiles every KV-span variant the timed runs meet) and its fastest timed run."""

    def __init__(self, model, batch: int, max_bytes: int, tau: float, every: int, compile: bool,
                 eager_fallback: bool):
        self.model, self.engine = model, Engine(model, compile=compile, eager_fallback=eager_fallback)
        self.prompts, self.max_bytes, self.tau, self.every = [PROMPT] * batch, max_bytes, tau, every
        self.best = None
        self.generate(max_bytes)

    def generate(self, n: int):
        return self.engine.generate(self.prompts, max_bytes=n, threshold=self.tau, temperature=0.0,
                                    eos_byte=None, scratch_every=self.every)

    def time_once(self):
        start = time.perf_counter()
        gens = self.generate(self.max_bytes)
        stats = decode_stats(self.model.cfg, gens, time.perf_counter() - start)
        if self.best is None or stats["seconds"] < self.best["seconds"]:
            self.best = stats

    def result(self) -> dict:
        """The fastest run, its prefill (timed separately) subtracted, and how its steps ran."""
        start = time.perf_counter()
        self.generate(1)
        prefill = time.perf_counter() - start
        self.best["decode_bytes_per_second"] = self.best["generated_bytes"] / max(self.best["seconds"] - prefill, 1e-9)
        return {**self.best, **step_stats(self.engine.last_runner)}


def time_decode(models: dict, batch: int, max_bytes: int, repeats: int, compile: bool = False,
                eager_fallback: bool = False) -> dict:
    """models: name -> (model, tau, scratch_every). The models' timed runs alternate, so slow drifts
    of the machine's speed (this VM's drift by tens of percent over minutes) hit every model alike."""
    cells = {name: _Cell(m, batch, max_bytes, tau, every, compile, eager_fallback)
             for name, (m, tau, every) in models.items()}
    for _ in range(repeats):
        for cell in cells.values():
            cell.time_once()
    return {name: cell.result() for name, cell in cells.items()}


def sp_model(folder: str | None, device: str):
    """(model, where it came from): the model in `folder`, else the packaged default model, else the
    default model's preset with random weights (seeded; they trigger scratchpads almost everywhere)."""
    torch.manual_seed(0)
    try:
        return load_model(folder, device=device), folder or "packaged default model"
    except UserError:
        if folder:
            raise
    model = build_model(ModelConfig.preset(FALLBACK_PRESET)).to(device).eval()
    return model, f"{FALLBACK_PRESET} preset (the default model's), random weights (no default model packaged)"


@dataclass
class GenerateBenchResult:
    """cells[(name, batch)]: decode_stats + step_stats of the fastest run of "sp" or "byte" at that batch."""
    source: str
    tau: float
    scratch_every: int
    max_bytes: int
    batch_sizes: list[int]
    device: str
    threads: int
    compiled: bool
    cells: dict[tuple[str, int], dict]

    def speedup(self, batch: int) -> float:
        """The SP model's decode bytes/s over the baseline's at this batch size."""
        return self.cells[("sp", batch)]["decode_bytes_per_second"] / self.cells[("byte", batch)]["decode_bytes_per_second"]

    def json(self) -> dict:
        """The command's JSON line: rates per cell, the SP model's speedup at each batch size."""
        first = self.cells[("sp", self.batch_sizes[0])]
        summary = {
            "device": self.device, "threads": self.threads, "compiled": self.compiled, "threshold": tau_json(self.tau),
            "scratch_every": self.scratch_every,
            "sp_model": self.source, "max_bytes": self.max_bytes,
            "bytes_per_second": {f"{n}_b{b}": round(r["decode_bytes_per_second"], 2) for (n, b), r in self.cells.items()},
            "decode_step": {f"{n}_b{b}": r["decode_step"] for (n, b), r in self.cells.items()},
            "graph_fallback": {f"{n}_b{b}": r["graph_fallback"] for (n, b), r in self.cells.items()},
            "scratchpad_rate_b1": first["scratchpad_rate"],
            "flops_ratio_vs_byte": first["flops_ratio_vs_byte"],
            "speedup_vs_byte": self.speedup(self.batch_sizes[0]),
        }
        for b in self.batch_sizes[1:]:
            summary[f"speedup_vs_byte_b{b}"] = self.speedup(b)
        return summary


def run(sp, source: str, tau: float, scratch_every: int = 0, max_bytes: int = 256, batch_sizes=(1, 16),
        repeats: int = 5, device: str = "cpu", compile: bool = False, eager_fallback: bool = False,
        on_cell=lambda name, batch, stats: None) -> GenerateBenchResult:
    """Time `sp` (on `device`; at tau, every `scratch_every`th byte) and its byte-level baseline (no
    scratchpads) at each batch size, at torch's current thread count; `source` says where `sp` came from."""
    base = build_model(byte_baseline(sp.cfg)).to(device).eval()
    cells = {}
    for b in batch_sizes:
        models = {"sp": (sp, tau, scratch_every), "byte": (base, math.inf, 0)}
        for name, stats in time_decode(models, b, max_bytes, repeats, compile, eager_fallback).items():
            cells[(name, b)] = stats
            on_cell(name, b, stats)
    return GenerateBenchResult(source, tau, scratch_every, max_bytes, list(batch_sizes), device,
                               torch.get_num_threads(), compile, cells)
