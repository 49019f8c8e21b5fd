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

import math
import sys
import time

from eval.experiments.bpb import run_bpb
from eval.cli_args import common_args, parse_rates, parse_thresholds
from eval.engine_check import engine_check, engine_sample
from eval.experiments.lag import lag_figures, lag_plots, lag_sections
from eval.loading import load_eval_model, model_info
from eval.report import fmt, out_folder, plot_xy, short_path, table, write_report
from eval.scoring import entropy_quantile_thresholds, paired_difference
from eval.windows import WINDOWING, default_window, eval_bytes
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag

DEFAULT_THRESHOLDS = "0,0.5,1,1.5,2,3,inf"


def spread_summary(rows: list[dict]) -> dict:
    """What a BPB difference between taus means: each row's standard error over windows, and each
    row's difference from tau = inf with its paired standard error (same windows, so the
    window-to-window spread cancels); the text names the best finite tau."""
    se = [r["bpb_se"] for r in rows if r.get("bpb_se") is not None]
    out = dict(se_min=min(se) if se else None, se_max=max(se) if se else None, windows=rows[0]["windows"])
    text = (f"each BPB's standard error over its {rows[0]['windows']} windows is {fmt(out['se_min'], 2)}–{fmt(out['se_max'], 2)}"
            if se else "one window only: no spread to show")
    plain = next((r for r in rows if math.isinf(r["threshold"])), None)
    others = [r for r in rows if r is not plain and r.get("window_bpb")]
    if plain is None or not plain.get("window_bpb") or not others:
        out["text"] = text
        return out
    for r in others:
        r["diff_vs_plain"], r["diff_vs_plain_se"] = paired_difference(r["window_bpb"], plain["window_bpb"])
    best = min(others, key=lambda r: r["bpb"])
    d, d_se = best["diff_vs_plain"], best["diff_vs_plain_se"]
    z = abs(d) / d_se if d_se else math.inf
    out.update(best_threshold=best["threshold"], diff_vs_plain=d, diff_vs_plain_se=d_se)
    out["text"] = (text + f"; the best finite τ = {fmt(best['threshold'], 3)} differs from τ = ∞ by {d:+.4f} BPB "
                   f"± {fmt(d_se, 2)} (paired SE over the same windows; {fmt(z, 2)} SE: "
                   + ("more than noise)" if z >= 2 else "within noise)"))
    return out


def sweep_rows(model, arr, W: int, taus: list[float], batch_size: int, engine_bytes: int, engine_rows: int = 2,
               targets: list[float] | None = None, log=print) -> list[dict]:
    rows = []
    sample = engine_sample(arr, W, engine_bytes, engine_rows) if engine_bytes else None
    for i, tau in enumerate(taus):
        r = run_bpb(model, arr, W, tau, batch_size, lag=True)
        if targets is not None:
            r["target_rate"] = targets[i]
        if sample is not None:
            t0 = time.perf_counter()
            r["engine"] = engine_check(model, sample, tau)
            r["engine"]["seconds"] = time.perf_counter() - t0
        rows.append(r)
        log(f"tau {fmt(tau):>6}: bpb {r['bpb']:.4f}, scratchpads {100 * r['scratchpad_rate']:5.1f}%, "
            f"{fmt(r['flops_per_byte'])} FLOPs/byte ({r['flops_ratio_vs_byte']:.3f}x byte), KV {r['kv_ratio_vs_byte']:.3f}x"
            + (f", engine {'agrees' if r['engine']['agree'] else 'DISAGREES'}" if sample is not None else ""))
    return rows


def evaluate_baselines(paths: list[str], tokenizer_dir: str | None, arr, W: int, batch_size: int, threads) -> list[dict]:
    out = []
    for p in paths:
        m, label = load_eval_model(p, threads)
        Wb = min(W, m.cfg.max_seq_len)
        r = run_bpb(m, arr, Wb, math.inf, batch_size)
        out.append(dict(label=f"{m.cfg.name} ({label})", kind="model", path=label, window=Wb, **{
            k: r[k] for k in ("bpb", "bpb_se", "flops_per_byte", "flops_per_byte_split", "kv_bytes_per_byte", "scratchpad_rate",
                              "trunk_calls_per_byte", "bytes")}))
    if tokenizer_dir:
        from eval.experiments.tokenizer_baseline import TokenBaseline

        tb = TokenBaseline.load(tokenizer_dir)
        r = tb.evaluate(arr, batch_size)
        out.append(dict(label=f"BPE tokens ({tb.tok.vocab_size}) + {tb.model.trunk_cfg.get('preset')} trunk", kind="tokenizer",
                        path=str(tokenizer_dir), **r))
    return out


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
    if not model.cfg.scratchpad:
        raise UserError(f"{label}: this model has no scratchpads (config scratchpad=false), so every tau gives the same "
                        f"result; use 'scratchpad eval bpb' for it, or pass it as --baseline of a scratchpad model's sweep")
    W = default_window(model.cfg, a.window)
    arr, data = eval_bytes(a.data, a.split, a.max_bytes, W)
    if targets is not None:
        taus = entropy_quantile_thresholds(model, arr, W, targets, a.batch_size)
    order = sorted(range(len(taus)), key=lambda i: (taus[i], i), reverse=True)  # cheapest first
    taus = [taus[i] for i in order]
    targets = [targets[i] for i in order] if targets is not None else None
    print(f"sweep of {model.cfg.name} over {len(arr):,} bytes in windows of {W}", flush=True)
    rows = sweep_rows(model, arr, W, taus, a.batch_size, a.engine_bytes, targets=targets)
    figures = lag_figures(model, arr, W, rows, a.batch_size)
    baselines = evaluate_baselines(a.baseline, a.tokenizer_baseline, arr, W, a.batch_size, a.threads)
    for b in baselines:
        print(f"baseline {b['label']}: bpb {b['bpb']:.4f}, {fmt(b['flops_per_byte'])} FLOPs/byte", flush=True)
    byte_base = dict(flops_per_byte=rows[0]["byte_baseline_flops_per_byte"],
                     flops_per_byte_split=rows[0]["byte_baseline_flops_per_byte_split"],
                     kv_bytes_per_byte=rows[0]["byte_baseline_kv_bytes_per_byte"])
    eng = [r["engine"] for r in rows if "engine" in r]
    engine_summary = dict(bytes_per_row=min(a.engine_bytes, W, len(arr)) if eng else 0, rows=2 if eng else 0,
                          all_agree=all(e["agree"] for e in eng) if eng else None,
                          logits_all_agree=all(e["logits_agree"] for e in eng) if eng else None)
    result = dict(command="sweep", model=model_info(model, label), data=data, window=W, method=WINDOWING.format(W=W),
                  mode="rates" if targets is not None else "thresholds", rows=rows, byte_baseline=byte_base,
                  baselines=baselines, engine_check=engine_summary, lag_figures=figures)

    spread = spread_summary(rows)
    result["spread"] = spread
    note = plot_xy(out / "sweep.png",
                   [dict(label=f"{model.cfg.name} (τ sweep; bars ± 1 SE over windows)", x=[r["flops_per_byte"] for r in rows],
                         y=[r["bpb"] for r in rows], err=[r.get("bpb_se") for r in rows],
                         annotate=[f"τ={fmt(r['threshold'], 3)}" for r in rows])],
                   "FLOPs per byte (inference accounting)", "bits per byte",
                   f"BPB vs FLOPs per byte, {short_path(data['path'])}",
                   points=[dict(label=b["label"], x=b["flops_per_byte"], y=b["bpb"], err=b.get("bpb_se")) for b in baselines],
                   vlines=[dict(label="byte-level baseline FLOPs", x=byte_base["flops_per_byte"])], logx=True,
                   note=spread["text"])

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
    bb = byte_base["flops_per_byte_split"]
    sections = [
        f"Model: `{label}` ({model.cfg.name}, patcher {model.cfg.patcher}, P={model.cfg.patch_size}, trunk "
        f"{'/'.join(model.cfg.trunk_mixers)} d={model.cfg.d_model}). Data: `{data['path']}`, {data['bytes_used']:,} bytes. "
        f"Method: {WINDOWING.format(W=W)}."
        + (" τ per target rate = the entropy quantile (over bytes that do not close a patch) that leaves that fraction "
           "of all scored bytes above it." if targets is not None else ""),
        "## Sweep\n\n" + table(head, body),
        "Noise: " + spread["text"],
        "FLOPs per byte = scratchpad/accounting.py applied to the parallel forward's events (bytes, commits, "
        "scratchpads, attended keys, aux steps where inference needs the aux head). Byte-level baseline of equal "
        f"trunk on the same windows: {fmt(byte_base['flops_per_byte'])} FLOPs/byte (encoder {fmt(bb['encoder'])}, "
        f"aux {fmt(bb['aux'])}, trunk {fmt(bb['trunk'])}, decoder {fmt(bb['decoder'])}), "
        f"{fmt(byte_base['kv_bytes_per_byte'])} KV bytes/byte (fp32 K and V of every trunk attention layer per byte). "
        "KV × byte is committed trunk entries per byte (1/P for fixed patches).",
        "## FLOPs by part relative to the byte-level baseline\n\n" + table(ratio_head, ratio_body),
    ]
    sections += lag_sections(rows, figures)
    if lag_plots(out, rows, f"{model.cfg.name}, {data['split'] or 'file'}") is None:
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
        verdict = "agree exactly at every τ" if engine_summary["all_agree"] else "DISAGREE at some τ (see the table)"
        sections.append(
            f"## Engine-counted events vs the parallel forward\n\nThe engine (infer/engine.py) decoded "
            f"{engine_summary['rows']} rows of {engine_summary['bytes_per_row']} bytes byte by byte (teacher forcing, no "
            f"prefill) at every τ; its counted events priced by the same accounting and the parallel forward's events on "
            f"the same bytes {verdict}. (The sample is short, so its FLOPs per byte differ from the full-data column above: "
            f"attention keys grow with position.)\n\n" + table(eh, eb))
    if baselines:
        bh = ["baseline", "BPB", "FLOPs / byte", "KV bytes / byte", "trunk calls / byte"]
        sections.append("## Baselines (points on the picture)\n\n" + table(
            bh, [[b["label"], b["bpb"], b["flops_per_byte"], b["kv_bytes_per_byte"], b["trunk_calls_per_byte"]] for b in baselines]))
    else:
        sections.append("No trained baseline was given (`--baseline MODEL`, `--tokenizer-baseline DIR`); the picture shows "
                        "the byte-level baseline's FLOPs per byte as a dashed line only.")
    write_report(out, "sweep", "Entropy-threshold sweep", sections, result, png_note=note, png=True)
    if eng and not engine_summary["all_agree"]:
        print("warning: the engine's counted events disagree with the parallel forward's at some tau (see sweep.md)", file=sys.stderr)
    print(f"-> {out / 'sweep.md'}" + (f" ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
