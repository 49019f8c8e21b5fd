"""`scratchpad eval sweep`: the entropy-threshold sweep: BPB vs FLOPs and KV per byte.

    scratchpad eval sweep --model runs/default --data /work/data/text --thresholds 0,0.5,1,1.5,2,3,inf --out reports/sweep
    scratchpad eval sweep --model runs/default --data /work/data/text --rates 0,0.05,0.1,0.25,0.5 --out reports/sweep

Per tau: BPB, realised scratchpad rate, trunk calls per byte, FLOPs per byte split into encoder,
aux, trunk and decoder, KV bytes per byte, each also as a ratio to the byte-level baseline of equal
trunk (every byte a patch, no scratchpads, no aux head). `--rates` is the compute-budget form: each
target scratchpad rate picks tau by entropy quantile on the evaluated bytes.

FLOPs are computed twice: the accounting applied to the parallel forward's events over all scored
bytes, and the accounting applied to the events the engine counted while decoding a sample byte by
byte (teacher forcing, `--engine-bytes` per row, two rows); on that sample the parallel forward's
events are counted too, and the report says whether the two agree exactly (and how close the
engine's logits are to the parallel forward's).

Baselines as points on the picture: `--baseline MODEL` (repeatable: e.g. a trained `byte` preset)
is scored on the same windows without scratchpads, `--tokenizer-baseline DIR` (eval/experiments/tokenizer_baseline.py)
on the same bytes; the byte-level baseline's FLOPs per byte are always drawn as a line.
Writes sweep.md, sweep.json, sweep.png into --out.
"""
from __future__ import annotations

import sys

from eval.cli_args import common_args, parse_rates, parse_thresholds
from eval.experiments.lag_cli import lag_plots, lag_sections
from eval.experiments.sweep import SweepResult, run
from eval.loading import load_eval_model
from eval.report import fmt, out_folder, plot_xy, short_path, table, write_report
from eval.windows import WINDOWING, default_window, eval_bytes
from scratchpad.errors import run_cli
from scratchpad.flags import Parser, describe, int_flag

DEFAULT_THRESHOLDS = "0,0.5,1,1.5,2,3,inf"


def render(res: SweepResult, out, label: str, cfg) -> str | None:
    """sweep.md, sweep.json, sweep.png and the lag pictures into out; returns the picture's note."""
    rows, data, W, targets = res.rows, res.data, res.window, res.targets
    eng = [r["engine"] for r in rows if "engine" in r]
    note = plot_xy(out / "sweep.png",
                   [dict(label=f"{cfg.name} (τ sweep; bars ± 1 SE over windows)", x=[r["flops_per_byte"] for r in rows],
                         y=[r["bpb"] for r in rows], err=[r.get("bpb_se") for r in rows],
                         annotate=[f"τ={fmt(r['threshold'], 3)}" for r in rows])],
                   "FLOPs per byte (inference accounting)", "bits per byte",
                   f"BPB vs FLOPs per byte, {short_path(data['path'])}",
                   points=[dict(label=b["label"], x=b["flops_per_byte"], y=b["bpb"], err=b.get("bpb_se")) for b in res.baselines],
                   vlines=[dict(label="byte-level baseline FLOPs", x=res.byte_baseline["flops_per_byte"])], logx=True,
                   note=res.spread["text"])

    head = ["τ"] + (["target rate"] if targets is not None else []) + [
        "BPB", "scratchpad rate", "trunk calls / byte", "FLOPs / byte", "encoder", "aux", "trunk", "decoder",
        "FLOPs × byte", "KV bytes / byte", "KV × byte"]
    body = []
    for r in rows:
        s = r["flops_per_byte_split"]
        body.append([r["threshold"]] + ([r["target_rate"]] if targets is not None else []) + [
            r["bpb"], r["scratchpad_rate"], r["trunk_calls_per_byte"], r["flops_per_byte"], s["encoder"], s["aux"],
            s["trunk"], s["decoder"], r["flops_ratio_vs_byte"], r["kv_bytes_per_byte"], r["kv_ratio_vs_byte"]])
    ratio_head = ["τ", "encoder × byte", "aux × byte", "trunk × byte", "decoder × byte", "total × byte"]
    ratio_body = [[r["threshold"]] + [r["flops_ratio_vs_byte_split"][k] for k in ("encoder", "aux", "trunk", "decoder")]
                  + [r["flops_ratio_vs_byte"]] for r in rows]
    bb = res.byte_baseline["flops_per_byte_split"]
    sections = [
        f"Model: `{label}` ({cfg.name}, patcher {cfg.patcher}, P={cfg.patch_size}, trunk "
        f"{'/'.join(cfg.trunk_mixers)} d={cfg.d_model}). Data: `{data['path']}`, {data['bytes_used']:,} bytes. "
        f"Method: {WINDOWING.format(W=W)}."
        + (" τ per target rate = the entropy quantile (over bytes that do not close a patch) that leaves that fraction "
           "of all scored bytes above it." if targets is not None else ""),
        "## Sweep\n\n" + table(head, body),
        "Noise: " + res.spread["text"],
        "FLOPs per byte = scratchpad/accounting.py applied to the parallel forward's events (bytes, commits, "
        "scratchpads, attended keys, aux steps where inference needs the aux head). Byte-level baseline of equal "
        f"trunk on the same windows: {fmt(res.byte_baseline['flops_per_byte'])} FLOPs/byte (encoder {fmt(bb['encoder'])}, "
        f"aux {fmt(bb['aux'])}, trunk {fmt(bb['trunk'])}, decoder {fmt(bb['decoder'])}), "
        f"{fmt(res.byte_baseline['kv_bytes_per_byte'])} KV bytes/byte (fp32 K and V of every trunk attention layer per byte). "
        "KV × byte is committed trunk entries per byte (1/P for fixed patches).",
        "## FLOPs by part relative to the byte-level baseline\n\n" + table(ratio_head, ratio_body),
    ]
    sections += lag_sections(rows, res.lag_figures)
    if lag_plots(out, rows, f"{cfg.name}, {data['split'] or 'file'}") is None:
        sections.append("![BPB by offset since the latest commit, a line per τ](lag.png)")
    if eng:
        eh = ["τ", "engine FLOPs / byte", "parallel FLOPs / byte", "engine commits / scratchpads / keys / aux",
              "parallel commits / scratchpads / keys / aux", "agree", "max |Δlogit| / max |logit|"]
        eb = []
        for r in rows:
            e = r["engine"]
            ev, pv = e["engine_events"], e["parallel_events"]
            eb.append([r["threshold"], e["engine_flops_per_byte"], e["parallel_flops_per_byte"],
                       " / ".join(str(ev[k]) for k in ("commits", "scratchpads", "keys", "aux")),
                       " / ".join(str(pv[k]) for k in ("commits", "scratchpads", "keys", "aux")), e["agree"],
                       e["logits_max_rel_diff"]])
        verdict = "agree exactly at every τ" if res.engine_check["all_agree"] else "DISAGREE at some τ (see the table)"
        sections.append(
            f"## Engine-counted events vs the parallel forward\n\nThe engine (infer/engine.py) decoded "
            f"{res.engine_check['rows']} rows of {res.engine_check['bytes_per_row']} bytes byte by byte (teacher forcing, no "
            f"prefill) at every τ; its counted events priced by the same accounting and the parallel forward's events on "
            f"the same bytes {verdict}. (The sample is short, so its FLOPs per byte differ from the full-data column above: "
            f"attention keys grow with position.)\n\n" + table(eh, eb))
    if res.baselines:
        bh = ["baseline", "BPB", "FLOPs / byte", "KV bytes / byte", "trunk calls / byte"]
        sections.append("## Baselines (points on the picture)\n\n" + table(
            bh, [[b["label"], b["bpb"], b["flops_per_byte"], b["kv_bytes_per_byte"], b["trunk_calls_per_byte"]] for b in res.baselines]))
    else:
        sections.append("No trained baseline was given (`--baseline MODEL`, `--tokenizer-baseline DIR`); the picture shows "
                        "the byte-level baseline's FLOPs per byte as a dashed line only.")
    write_report(out, "sweep", "Entropy-threshold sweep", sections, res.json(), png_note=note, png=True)
    return note


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval sweep", description=describe(__doc__))
    common_args(ap, max_bytes=1 << 17)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--thresholds", help=f"comma-separated taus in nats, 'inf' = none (default {DEFAULT_THRESHOLDS})")
    g.add_argument("--rates", help="comma-separated target scratchpad rates (fractions of bytes); tau by entropy quantile")
    ap.add_argument("--engine-bytes", type=int_flag("--engine-bytes", 0), default=256,
                    help="bytes per row decoded by the engine to check its counted FLOPs (default 256, 0 = skip)")
    ap.add_argument("--baseline", action="append", default=[], help="a trained baseline model (e.g. the byte preset); repeatable")
    ap.add_argument("--tokenizer-baseline", help="a folder written by scratchpad eval tokenizer")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    targets = parse_rates(a.rates) if a.rates else None
    taus = None if targets else parse_thresholds(a.thresholds or DEFAULT_THRESHOLDS)
    out = out_folder(a.out)
    model, label = load_eval_model(a.model, a.threads)
    W = default_window(model.cfg, a.window)
    arr, data = eval_bytes(a.data, a.split, a.max_bytes, W)
    res = run(model, label, arr, data, W, taus, targets, a.batch_size, a.engine_bytes, a.baseline, a.tokenizer_baseline,
              a.threads, log=lambda line: print(line, flush=True))
    note = render(res, out, label, model.cfg)
    if res.engine_check["all_agree"] is False:
        print("warning: the engine's counted events disagree with the parallel forward's at some tau (see sweep.md)", file=sys.stderr)
    print(f"-> {out / 'sweep.md'}" + (f" ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
