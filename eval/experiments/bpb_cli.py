"""`scratchpad eval bpb`: bits per byte on held-out bytes, with the realised scratchpad rate,
trunk calls per byte and FLOPs/KV per byte against the byte-level baseline of equal trunk.

    scratchpad eval bpb --model runs/default --data /work/data/text --threshold 1.5 --out reports/bpb

Long data is scored in non-overlapping windows of the model's length (or --window), each window
fully and from an empty context; see eval/windows.py. Writes bpb.md and bpb.json into --out.
"""
from __future__ import annotations

import sys

from eval import compressors
from eval.cli_args import common_args, parse_rate
from eval.experiments.bpb import BpbResult, run
from eval.loading import load_eval_model
from eval.report import fmt, out_folder, plot_bars, short_path, table, write_report
from eval.windows import WINDOWING, default_window, eval_bytes
from infer.options import parse_threshold
from scratchpad.errors import run_cli
from scratchpad.flags import RATE_FLAGS, THRESHOLD_FLAGS, Parser, describe


def render(res: BpbResult, out, label: str, cfg) -> None:
    """bpb.md, bpb.json and bpb.png (FLOPs per byte by part against the byte baseline) into out."""
    r, data, W = res.row, res.data, res.window
    tau = r["threshold"]
    sections = [
        f"Model: `{label}` ({cfg.name}, patcher {cfg.patcher}, P={cfg.patch_size}, "
        f"{res.model['params']['total'] / 1e6:.2f}M parameters). "
        f"Data: `{data['path']}`, {data['bytes_used']:,} bytes used of {data['file_bytes']:,}.",
        f"Method: {WINDOWING.format(W=W)}; {r['windows']} windows, {r['bytes']:,} predicted bytes. "
        f"BPB = summed next-byte cross-entropy (nats) / predicted bytes / ln 2."
        + (f" τ = {fmt(res.threshold)} was chosen as the entropy quantile giving a target scratchpad rate of "
           f"{fmt(res.target_rate)}." if res.target_rate is not None else "")
        + (f"\n\nNote: {res.note}." if res.note else ""),
        table(["τ", "BPB", "± SE (windows)", "scratchpad rate", "trunk calls / byte", "FLOPs / byte", "× byte baseline",
               "KV bytes / byte", "KV × byte baseline"],
              [[tau, r["bpb"], r["bpb_se"], r["scratchpad_rate"], r["trunk_calls_per_byte"], r["flops_per_byte"],
                r["flops_ratio_vs_byte"], r["kv_bytes_per_byte"], r["kv_ratio_vs_byte"]]]),
        "FLOPs per byte by part: " + ", ".join(f"{k} {fmt(v)}" for k, v in r["flops_per_byte_split"].items())
        + f" (byte-level baseline of equal trunk: {fmt(r['byte_baseline_flops_per_byte'])} FLOPs/byte, "
        f"{fmt(r['byte_baseline_kv_bytes_per_byte'])} KV bytes/byte). FLOPs are the config's accounting "
        "(scratchpad/accounting.py) applied to the events of the parallel forward.",
    ]
    if res.compressors is not None:
        sections.append(compressors.section(res.compressors, r["bpb"], f"τ = {fmt(tau)}"))
    note = plot_bars(out / "bpb.png", [f"{cfg.name}, τ = {fmt(tau, 3)}\nBPB {r['bpb']:.4f}", "byte-level baseline,\nequal trunk"],
                     [dict(label=k, values=[r["flops_per_byte_split"][k], r["byte_baseline_flops_per_byte_split"][k]])
                      for k in r["flops_per_byte_split"]], "inference FLOPs per byte",
                     f"FLOPs per byte by part, {short_path(data['path'])} ({r['bytes']:,} bytes)", stacked=True,
                     note=f"BPB {r['bpb']:.4f} ± {fmt(r['bpb_se'], 2)} (standard error over {r['windows']} windows); "
                          f"scratchpads at {100 * r['scratchpad_rate']:.1f}% of bytes")
    write_report(out, "bpb", "Bits per byte", sections, res.json(), png_note=note, png=True)


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval bpb", description=describe(__doc__))
    common_args(ap)
    g = ap.add_mutually_exclusive_group()
    g.add_argument(*THRESHOLD_FLAGS, dest="threshold", metavar="TAU", help="tau in nats; 'inf' = no scratchpads (default 1.5)")
    g.add_argument(*RATE_FLAGS, dest="rate", metavar="R",
                   help="instead of tau: a target scratchpad rate (fraction of bytes); tau by entropy quantile")
    ap.add_argument("--compare-compressors", action="store_true",
                    help="also run gzip -9, bzip2 -9, xz -9e, zstd -19 (those installed) on the same bytes, "
                         "whole-file and per window (eval/compressors.py)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model's forward (the compile time, "
                    "measured on a warm-up batch, is reported once as compile_s)")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    rate = parse_rate(a.rate, "--rate") if a.rate is not None else None
    tau = parse_threshold(a.threshold if a.threshold is not None else "1.5", "--threshold")
    out = out_folder(a.out)
    model, label = load_eval_model(a.model, a.threads)
    W = default_window(model.cfg, a.window)
    arr, data = eval_bytes(a.data, a.split, a.max_bytes, W)
    res = run(model, label, arr, data, W, tau, rate, a.batch_size, a.compile, a.compare_compressors,
              log=lambda line: print(line, file=sys.stderr))
    render(res, out, label, model.cfg)
    r = res.row
    print(f"bpb {r['bpb']:.4f} (± {fmt(r['bpb_se'], 2)} SE over windows) at tau {fmt(r['threshold'])} over {r['bytes']:,} "
          f"bytes ({r['windows']} windows of {W}); scratchpads at {100 * r['scratchpad_rate']:.1f}% of bytes, "
          f"{r['trunk_calls_per_byte']:.3f} trunk calls/byte, {r['flops_ratio_vs_byte']:.3f}x the byte baseline's FLOPs "
          f"-> {out / 'bpb.md'}")
    if res.compressors is not None:
        print(compressors.summary_line(res.compressors))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
