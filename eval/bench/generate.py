"""`scratchpad bench generate`: decode speed of an SP model vs the byte-level baseline of equal trunk.

Times `Engine.generate` (prefill excluded) at batch 1 and 16, prints a table, then one JSON line
with `speedup_vs_byte` at batch 1. At each batch size the SP model's and the baseline's timed runs
alternate (best of --repeats each), so the machine's drifts hit both alike. The SP model is
--model (default: the packaged default model, or the heavy-p16-aux2 preset with random weights
when none is packaged -- random weights trigger scratchpads almost everywhere, so use a trained
model for meaningful numbers).
"""
from __future__ import annotations

import json
import math
import sys
import time

import torch

from eval.cli_args import parse_counts
from infer import Engine
from infer.generate import DECODE_THREADS, add_eager_fallback_flag, decode_device
from infer.options import parse_threshold
from infer.stats import decode_stats, step_stats
from scratchpad import ModelConfig, build_model, load_model
from scratchpad.accounting import byte_baseline
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import (THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe, int_flag,
                              set_threads)
from scratchpad.trigger import tau_json

PROMPT = b"The history of the English language begins with the arrival of three Germanic tribes. "


class _Cell:
    """One model at one batch size: its engine (warmed up twice at full length: with --compile the
    first run grows the KV page pool, the second compiles every (span, pool size) variant the timed
    runs meet) and its fastest timed run."""

    def __init__(self, model, batch: int, max_bytes: int, tau: float, every: int, compile: bool,
                 eager_fallback: bool):
        self.model, self.engine = model, Engine(model, compile=compile, eager_fallback=eager_fallback)
        self.prompts, self.max_bytes, self.tau, self.every = [PROMPT] * batch, max_bytes, tau, every
        self.best = None
        for _ in range(2 if compile else 1):
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


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad bench generate", description=describe(__doc__))
    ap.add_argument("--model", help="SP model folder or training --out folder (default: the packaged default model)")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", default="1.5", metavar="TAU",
                    help="entropy threshold of the SP model in nats ('inf' = no scratchpads)")
    add_scratch_every_flag(ap)
    ap.add_argument("--max-bytes", type=int_flag("--max-bytes"), default=256, metavar="N", help="bytes generated per row")
    ap.add_argument("--batch-sizes", default="1,16", metavar="B,B", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int_flag("--repeats"), default=5, metavar="N",
                    help="timed runs per cell, best kept (this VM's speed drifts by tens of percent)")
    add_threads_flag(ap, DECODE_THREADS, "the generate command's default")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (CUDA: the decode step replays as CUDA graphs)")
    ap.add_argument("--compile", action="store_true",
                    help="CPU: torch.compile the decode step (compilation, tens of seconds, happens in the "
                         "untimed warm-up)")
    add_eager_fallback_flag(ap)
    args = ap.parse_args(argv)
    tau = parse_threshold(args.threshold, "--threshold")
    batches = parse_counts(args.batch_sizes, "--batch-sizes")
    decode_device(args.device, compile=args.compile)
    set_threads(args.threads)
    torch.manual_seed(0)
    try:
        sp = load_model(args.model, device=args.device)
        source = args.model or "packaged default model"
    except UserError:
        if args.model:
            raise
        sp = build_model(ModelConfig.preset("heavy-p16-aux2")).to(args.device).eval()
        source = "heavy-p16-aux2 preset (the default model's), random weights (no default model packaged)"
    base = build_model(byte_baseline(sp.cfg)).to(args.device).eval()
    print(f"SP model: {source} (P={sp.cfg.patch_size}, patcher {sp.cfg.patcher}); baseline: {base.cfg.name}; "
          f"tau={tau:.3g}{f', scratch every {args.scratch_every}' if args.scratch_every else ''}; "
          f"{args.max_bytes} bytes per row; device {args.device}, {args.threads} thread(s)"
          f"{', compiled step' if args.compile else ''}")
    print(f"{'model':<12} {'batch':>5} {'bytes/s':>10} {'scratch':>8} {'trunk/byte':>10} {'MFLOP/byte':>10} {'KV ratio':>8}")
    results = {}
    for b in batches:
        models = {"sp": (sp, tau, args.scratch_every), "byte": (base, math.inf, 0)}
        timed = time_decode(models, b, args.max_bytes, args.repeats, args.compile, args.eager_fallback)
        for name, r in timed.items():
            results[(name, b)] = r
            print(f"{name:<12} {b:>5} {r['decode_bytes_per_second']:>10.1f} {r['scratchpad_rate']:>8.3f} "
                  f"{r['trunk_calls_per_byte']:>10.3f} {r['flops_per_byte'] / 1e6:>10.3f} {r['kv_ratio_vs_byte']:>8.3f}")
    summary = {
        "device": args.device, "threads": args.threads, "compiled": args.compile, "threshold": tau_json(tau),
        "scratch_every": args.scratch_every,
        "sp_model": source, "max_bytes": args.max_bytes,
        "bytes_per_second": {f"{n}_b{b}": round(r["decode_bytes_per_second"], 2) for (n, b), r in results.items()},
        "decode_step": {f"{n}_b{b}": r["decode_step"] for (n, b), r in results.items()},
        "graph_fallback": {f"{n}_b{b}": r["graph_fallback"] for (n, b), r in results.items()},
        "scratchpad_rate_b1": results[("sp", batches[0])]["scratchpad_rate"],
        "flops_ratio_vs_byte": results[("sp", batches[0])]["flops_ratio_vs_byte"],
        "speedup_vs_byte": results[("sp", batches[0])]["decode_bytes_per_second"]
        / results[("byte", batches[0])]["decode_bytes_per_second"],
    }
    for b in batches[1:]:
        summary[f"speedup_vs_byte_b{b}"] = (results[("sp", b)]["decode_bytes_per_second"]
                                            / results[("byte", b)]["decode_bytes_per_second"])
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
