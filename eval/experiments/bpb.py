"""`scratchpad eval bpb`: bits per byte on held-out bytes, with the realised scratchpad rate,
trunk calls per byte and FLOPs/KV per byte against the byte-level baseline of equal trunk.

    scratchpad eval bpb --model runs/default --data /work/data/text --threshold 1.5 --out reports/bpb

Long data is scored in non-overlapping windows of the model's length (or --window), each window
fully and from an empty context; see eval/windows.py. Writes bpb.md and bpb.json into --out.
"""
from __future__ import annotations

import math
import sys
import time

from eval import compressors
from eval.cli_args import common_args, parse_rate
from eval.lag_stats import LagStats
from eval.loading import load_eval_model, model_info
from eval.report import fmt, out_folder, plot_bars, short_path, table, write_report
from eval.scoring import accounting, entropy_quantile_thresholds, evaluate
from eval.windows import WINDOWING, default_window, eval_bytes
from infer.options import parse_threshold
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import RATE_FLAGS, THRESHOLD_FLAGS, Parser, describe


def run_bpb(model, arr, window: int, threshold: float, batch_size: int, lag: bool = False) -> dict:
    """BPB and accounting of one model at one tau over arr; lag=True adds the lag profile and the aux
    head's BPB from the same pass (eval/lag_stats.py)."""
    t0 = time.perf_counter()
    stats = LagStats() if lag else None
    sc = evaluate(model, arr, window, threshold, batch_size, on_output=stats)
    ev = sc.events
    res = dict(threshold=threshold, bpb=sc.bpb, bpb_se=sc.bpb_se, bytes=ev.bytes, windows=sc.windows, nats=sc.nats,
               commits=ev.commits, scratchpads=ev.scratchpads, keys=ev.keys, aux_steps=ev.aux,
               window_bpb=[round(v, 6) for v in sc.window_bpb])
    res.update(accounting(model.cfg, sc))
    if stats is not None:
        res["lag"] = stats.summary()
    res["seconds"] = time.perf_counter() - t0
    return res


def compile_for_eval(model, arr, window: int, threshold: float, batch_size: int):
    """-> (the compiled model, seconds its first batch took: the compile time)."""
    from eval.scoring import score
    from eval.windows import batches
    from scratchpad.precision import compile_module, compile_problem

    problem = compile_problem(next(model.parameters()).device)
    if problem:
        raise UserError(f"--compile: {problem}; run without --compile")
    compiled = compile_module(model)
    x, y = next(iter(batches(arr, window, batch_size)))
    t0 = time.perf_counter()
    score(compiled, x, y, threshold=None if math.isinf(threshold) else threshold)
    return compiled, time.perf_counter() - t0


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
    if rate is not None:
        if not model.cfg.scratchpad:
            raise UserError(f"--rate: {label} has no scratchpads (config scratchpad=false)")
        tau = entropy_quantile_thresholds(model, arr, W, [rate], a.batch_size)[0]
    if not model.cfg.scratchpad and math.isfinite(tau):
        note = f"this model has no scratchpads (config scratchpad=false); --threshold {a.threshold} is ignored"
        tau_eff = math.inf
    else:
        note, tau_eff = None, tau
    compiled, compile_s = compile_for_eval(model, arr, W, tau_eff, a.batch_size) if a.compile else (model, None)
    if compile_s is not None:
        print(f"compile: {compile_s:.1f}s (torch.compile warm-up on one batch)", file=sys.stderr)
    r = run_bpb(compiled, arr, W, tau_eff, a.batch_size)
    if compile_s is not None:
        r["compile_s"] = round(compile_s, 2)
    result = dict(command="bpb", model=model_info(model, label), data=data, window=W,
                  method=WINDOWING.format(W=W), requested_threshold=tau, target_rate=rate, note=note, **r)

    fs = r["flops_per_byte_split"]
    sections = [
        f"Model: `{label}` ({model.cfg.name}, patcher {model.cfg.patcher}, P={model.cfg.patch_size}, "
        f"{model_info(model, label)['params']['total'] / 1e6:.2f}M parameters). "
        f"Data: `{data['path']}`, {data['bytes_used']:,} bytes used of {data['file_bytes']:,}.",
        f"Method: {WINDOWING.format(W=W)}; {r['windows']} windows, {r['bytes']:,} predicted bytes. "
        f"BPB = summed next-byte cross-entropy (nats) / predicted bytes / ln 2."
        + (f" τ = {fmt(tau)} was chosen as the entropy quantile giving a target scratchpad rate of {fmt(rate)}."
           if rate is not None else "")
        + (f"\n\nNote: {note}." if note else ""),
        table(["τ", "BPB", "± SE (windows)", "scratchpad rate", "trunk calls / byte", "FLOPs / byte", "× byte baseline",
               "KV bytes / byte", "KV × byte baseline"],
              [[tau_eff, r["bpb"], r["bpb_se"], r["scratchpad_rate"], r["trunk_calls_per_byte"], r["flops_per_byte"],
                r["flops_ratio_vs_byte"], r["kv_bytes_per_byte"], r["kv_ratio_vs_byte"]]]),
        "FLOPs per byte by part: " + ", ".join(f"{k} {fmt(v)}" for k, v in fs.items())
        + f" (byte-level baseline of equal trunk: {fmt(r['byte_baseline_flops_per_byte'])} FLOPs/byte, "
        f"{fmt(r['byte_baseline_kv_bytes_per_byte'])} KV bytes/byte). FLOPs are the config's accounting "
        "(scratchpad/accounting.py) applied to the events of the parallel forward.",
    ]
    if a.compare_compressors:
        result["compressors"] = comp = compressors.compare(arr, W)
        sections.append(compressors.section(comp, r["bpb"], f"τ = {fmt(tau_eff)}"))
    parts = list(r["flops_per_byte_split"])
    note = plot_bars(out / "bpb.png", [f"{model.cfg.name}, τ = {fmt(tau_eff, 3)}\nBPB {r['bpb']:.4f}", "byte-level baseline,\nequal trunk"],
                     [dict(label=k, values=[r["flops_per_byte_split"][k], r["byte_baseline_flops_per_byte_split"][k]])
                      for k in parts], "inference FLOPs per byte",
                     f"FLOPs per byte by part, {short_path(data['path'])} ({r['bytes']:,} bytes)", stacked=True,
                     note=f"BPB {r['bpb']:.4f} ± {fmt(r['bpb_se'], 2)} (standard error over {r['windows']} windows); "
                          f"scratchpads at {100 * r['scratchpad_rate']:.1f}% of bytes")
    write_report(out, "bpb", "Bits per byte", sections, result, png_note=note, png=True)
    print(f"bpb {r['bpb']:.4f} (± {fmt(r['bpb_se'], 2)} SE over windows) at tau {fmt(tau_eff)} over {r['bytes']:,} bytes ({r['windows']} windows of {W}); "
          f"scratchpads at {100 * r['scratchpad_rate']:.1f}% of bytes, {r['trunk_calls_per_byte']:.3f} trunk calls/byte, "
          f"{r['flops_ratio_vs_byte']:.3f}x the byte baseline's FLOPs -> {out / 'bpb.md'}")
    if a.compare_compressors:
        print(compressors.summary_line(comp))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
