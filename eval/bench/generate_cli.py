"""`scratchpad bench generate`: decode speed of an SP model vs the byte-level baseline of equal trunk.

Times `Engine.generate` (prefill excluded) at batch 1 and 16, prints a table, then one JSON line
with `speedup_vs_byte` at batch 1. At each batch size the SP model's and the baseline's timed runs
alternate (best of --repeats each), so the machine's drifts hit both alike. The SP model is
--model (default: the packaged default model, or the heavy-p16-aux2 preset with random weights
when none is packaged -- random weights trigger scratchpads almost everywhere, so use a trained
model for meaningful numbers). The measurement is eval/bench/generate.py.
"""
from __future__ import annotations

import json
import sys

from eval.bench.generate import run, sp_model
from eval.cli_args import parse_counts
from infer.generate import DECODE_THREADS, add_eager_fallback_flag, decode_device
from infer.options import parse_threshold
from scratchpad.accounting import byte_baseline
from scratchpad.errors import run_cli
from scratchpad.flags import (THRESHOLD_FLAGS, Parser, add_scratch_every_flag, add_threads_flag, describe, int_flag,
                              set_threads)


def parser() -> Parser:
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
    return ap


def print_row(name: str, batch: int, r: dict) -> None:
    print(f"{name:<12} {batch:>5} {r['decode_bytes_per_second']:>10.1f} {r['scratchpad_rate']:>8.3f} "
          f"{r['trunk_calls_per_byte']:>10.3f} {r['flops_per_byte'] / 1e6:>10.3f} {r['kv_ratio_vs_byte']:>8.3f}")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    tau = parse_threshold(args.threshold, "--threshold")
    batches = parse_counts(args.batch_sizes, "--batch-sizes")
    decode_device(args.device, compile=args.compile)
    set_threads(args.threads)
    sp, source = sp_model(args.model, args.device)
    print(f"SP model: {source} (P={sp.cfg.patch_size}, patcher {sp.cfg.patcher}); baseline: {byte_baseline(sp.cfg).name}; "
          f"tau={tau:.3g}{f', scratch every {args.scratch_every}' if args.scratch_every else ''}; "
          f"{args.max_bytes} bytes per row; device {args.device}, {args.threads} thread(s)"
          f"{', compiled step' if args.compile else ''}")
    print(f"{'model':<12} {'batch':>5} {'bytes/s':>10} {'scratch':>8} {'trunk/byte':>10} {'MFLOP/byte':>10} {'KV ratio':>8}")
    res = run(sp, source, tau, args.scratch_every, args.max_bytes, batches, args.repeats, args.device, args.compile,
              args.eager_fallback, on_cell=print_row)
    print(json.dumps(res.json()))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
