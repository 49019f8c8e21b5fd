"""`scratchpad bench generate`: decode speed of an SP model vs the byte-level baseline of equal trunk.

Times `Engine.generate` (prefill excluded) at batch 1 and 16, prints a table, then one JSON line
with `speedup_vs_byte` at batch 1. The SP model is --model (default: the packaged default model,
or the sp-fixed-p16 preset with random weights when none is packaged -- random weights trigger
scratchpads almost everywhere, so use a trained model for meaningful numbers).
"""
from __future__ import annotations

import json
import math
import sys
import time

import torch

from infer import Engine
from eval.common import parse_counts
from infer.generate import DECODE_THREADS, decode_device
from infer.options import parse_threshold
from infer.stats import decode_stats
from scratchpad import ModelConfig, build_model, load_model
from scratchpad.accounting import byte_baseline
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import THRESHOLD_FLAGS, Parser, add_threads_flag, describe, int_flag, set_threads

PROMPT = b"The history of the English language begins with the arrival of three Germanic tribes. "


def time_decode(model, batch: int, max_bytes: int, tau: float, repeats: int, compile: bool = False) -> dict:
    engine = Engine(model, compile=compile)
    prompts = [PROMPT] * batch
    # warm-up at full length: with --compile, every KV-span shape the timed runs meet is compiled here
    engine.generate(prompts, max_bytes=max_bytes, threshold=tau, temperature=0.0, eos_byte=None)
    best = None
    for _ in range(repeats):
        start = time.perf_counter()
        gens = engine.generate(prompts, max_bytes=max_bytes, threshold=tau, temperature=0.0, eos_byte=None)
        stats = decode_stats(model.cfg, gens, time.perf_counter() - start)
        if best is None or stats["seconds"] < best["seconds"]:
            best = stats
    # the prompt's prefill is included in seconds; subtract a separate prefill timing
    start = time.perf_counter()
    engine.generate(prompts, max_bytes=1, threshold=tau, eos_byte=None)
    prefill = time.perf_counter() - start
    best["decode_bytes_per_second"] = best["generated_bytes"] / max(best["seconds"] - prefill, 1e-9)
    return best


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad bench generate", description=describe(__doc__))
    ap.add_argument("--model", help="SP model folder or training --out folder (default: the packaged default model)")
    ap.add_argument(*THRESHOLD_FLAGS, dest="threshold", default="1.5", metavar="TAU",
                    help="entropy threshold of the SP model in nats ('inf' = no scratchpads)")
    ap.add_argument("--max-bytes", type=int_flag("--max-bytes"), default=256, metavar="N", help="bytes generated per row")
    ap.add_argument("--batch-sizes", default="1,16", metavar="B,B", help="comma-separated batch sizes")
    ap.add_argument("--repeats", type=int_flag("--repeats"), default=2, metavar="N", help="timed runs per cell (best kept)")
    add_threads_flag(ap, DECODE_THREADS, "the generate command's default")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (CUDA: the decode step replays as CUDA graphs)")
    ap.add_argument("--compile", action="store_true",
                    help="CPU: torch.compile the decode step (compilation, tens of seconds, happens in the "
                         "untimed warm-up)")
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
          f"tau={tau:.3g}; {args.max_bytes} bytes per row; device {args.device}, {args.threads} thread(s)"
          f"{', compiled step' if args.compile else ''}")
    print(f"{'model':<12} {'batch':>5} {'bytes/s':>10} {'scratch':>8} {'trunk/byte':>10} {'MFLOP/byte':>10} {'KV ratio':>8}")
    results = {}
    for name, model, t in (("sp", sp, tau), ("byte", base, math.inf)):
        for b in batches:
            r = time_decode(model, b, args.max_bytes, t, args.repeats, args.compile)
            results[(name, b)] = r
            print(f"{name:<12} {b:>5} {r['decode_bytes_per_second']:>10.1f} {r['scratchpad_rate']:>8.3f} "
                  f"{r['trunk_calls_per_byte']:>10.3f} {r['flops_per_byte'] / 1e6:>10.3f} {r['kv_ratio_vs_byte']:>8.3f}")
    summary = {
        "device": args.device, "threads": args.threads, "compiled": args.compile, "threshold": tau if math.isfinite(tau) else "inf",
        "sp_model": source, "max_bytes": args.max_bytes,
        "bytes_per_second": {f"{n}_b{b}": round(r["decode_bytes_per_second"], 2) for (n, b), r in results.items()},
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
