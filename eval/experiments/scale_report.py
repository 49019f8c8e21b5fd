"""The reports of `scratchpad eval scale` (scale.py runs it, scale_cli.py is the command): scale.md/json
and pilot.md/json.

Every number comes from the runs' own records (the trainer's logs, the evaluation rows): nothing is
typed in. The gap at one scale is P16 SP minus the byte baseline on the same held-out windows, with
the standard error of the paired per-window difference. The trend is a weighted least-squares line
of the gap against log10(trunk parameters); where it crosses zero is the predicted crossover, with
a delta-method standard error.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from eval.report import fmt, plot_xy, table, write_report
from eval.scoring import paired_difference

SP, BYTE = "p16-sp", "byte"
TAU_DEFAULT = 1.5


def tau_key(t: float) -> str:
    return "inf" if math.isinf(t) else f"{t:g}"


def row_at(res: dict, set_name: str, tau: float) -> dict | None:
    return next((r for r in res["evals"][set_name]["rows"] if r["threshold"] == tau), None)


def json_runs(results: list[dict], set_names: list[str]) -> list[dict]:
    """scale.json's runs: τ written as a string ("inf", "1.5")."""
    runs = []
    for r in results:
        first = set_names[0]
        runs.append(dict(
            model=r["key"], scale=r["scale"], local=r["local"], name=r["name"], trunk_params=r["trunk_params"],
            params=r["params"], train_flops=r["train_flops"], train_bytes=r["train_bytes"], steps=r["steps"],
            train_seconds=r["train_seconds"], started=r.get("started"), causality=r["causality"],
            bpb={s: {tau_key(x["threshold"]): x["bpb"] for x in r["evals"][s]["rows"]} for s in set_names},
            bpb_se={s: {tau_key(x["threshold"]): x.get("bpb_se") for x in r["evals"][s]["rows"]} for s in set_names},
            scratchpad_rate={s: {tau_key(x["threshold"]): x.get("scratchpad_rate", 0.0) for x in r["evals"][s]["rows"]}
                             for s in set_names},
            infer_flops_per_byte={tau_key(x["threshold"]): x["flops_per_byte"] for x in r["evals"][first]["rows"]},
            learning_curve=r.get("curve", [])))
    return runs


def gaps(results: list[dict], set_names: list[str]) -> list[dict]:
    """Per scale and set: P16 SP (at its best τ and at τ = 1.5) minus byte, paired over windows."""
    out = []
    for d in sorted({r["scale"] for r in results}):
        at = {r["key"]: r for r in results if r["scale"] == d}
        if SP not in at or BYTE not in at:
            continue
        for s in set_names:
            b = at[BYTE]["evals"][s]["rows"][0]
            best = min(at[SP]["evals"][s]["rows"], key=lambda x: x["bpb"])
            row = dict(scale=d, set=s, trunk_params=at[SP]["trunk_params"], byte_bpb=b["bpb"], best_tau=best["threshold"])
            row["gap_best"], row["gap_best_se"] = paired_difference(best["window_bpb"], b["window_bpb"])
            default = row_at(at[SP], s, TAU_DEFAULT)
            if default is not None:
                row["gap_default"], row["gap_default_se"] = paired_difference(default["window_bpb"], b["window_bpb"])
            plain = at.get("p16-plain")
            if plain:
                row["gap_plain"], row["gap_plain_se"] = paired_difference(plain["evals"][s]["rows"][0]["window_bpb"],
                                                                          b["window_bpb"])
            out.append(row)
    return out


def fit_trend(points: list[dict], key: str) -> dict | None:
    """Weighted least squares gap = a + b log10(N) over scales; crossover N* where it reaches 0."""
    pts = [p for p in points if p.get(key) is not None and p.get(key + "_se")]
    if len({p["trunk_params"] for p in pts}) < 2:
        return None
    x = np.log10([p["trunk_params"] for p in pts])
    y = np.array([p[key] for p in pts])
    w = 1 / np.array([p[key + "_se"] for p in pts]) ** 2
    X = np.stack([np.ones_like(x), x], 1)
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    a, b = cov @ X.T @ (w * y)
    res = dict(intercept=float(a), slope_per_decade=float(b), slope_se=float(math.sqrt(cov[1, 1])),
               range=[float(10 ** x.min()), float(10 ** x.max())])
    if b < 0 < a or b > 0 > a:  # the line reaches zero somewhere
        lx = -a / b
        grad = np.array([-1 / b, a / b ** 2])  # d(lx)/d(a, b)
        res.update(crossover_params=float(10 ** lx), crossover_log10_se=float(math.sqrt(grad @ cov @ grad)))
    return res


def trend_sentence(fit: dict | None, set_name: str, gap_values: list[float]) -> str:
    """One sentence on the fitted gap (SP minus byte; negative = SP better) against trunk size."""
    if fit is None:
        return f"{set_name}: fewer than two scales, no trend."
    b, se = fit["slope_per_decade"], fit["slope_se"]
    lo, hi = fit["range"]
    measured = abs(b) > 2 * se
    head = (f"{set_name}: the gap changes by {b:+.3f} ± {se:.3f} BPB per 10x trunk parameters "
            f"({lo:,.0f}-{hi:,.0f}{'' if measured else '; within two standard errors of flat'})")
    if all(g < 0 for g in gap_values):
        state, closing = "SP is ahead of the byte baseline at every scale", b > 0
        who = "the byte baseline would catch up"
    elif all(g > 0 for g in gap_values):
        state, closing = "SP is behind the byte baseline at every scale", b < 0
        who = "SP would catch up"
    else:
        state, closing, who = "the two cross inside the measured range", True, "the line crosses zero"
    if not closing or "crossover_params" not in fit:
        return f"{head}; {state}, and the gap does not close with size, so no crossover is predicted."
    n, lse = fit["crossover_params"], fit["crossover_log10_se"]
    where = "inside the measured range" if lo <= n <= hi else "beyond the measured range, an extrapolation"
    return (f"{head}; {state}; on this line {who} at ~{n:.3g} trunk parameters (×/÷ {10 ** lse:.2g} at one "
            f"standard error, {where}).")


def write_scale(out: Path, results: list[dict], info: dict):
    set_names = [s["name"] for s in info["sets"]]
    g = gaps(results, set_names)
    fits = {s: {k: fit_trend([p for p in g if p["set"] == s], k) for k in ("gap_best", "gap_default")} for s in set_names}
    models = table(["scale d", "model", "config", "trunk params", "steps", "training bytes", "training FLOPs",
                    "train s", "started (UTC)", "causality"],
                   [[r["scale"], r["key"], r["name"], r["trunk_params"], r["steps"], r["train_bytes"], r["train_flops"],
                     r["train_seconds"], r.get("started"), r["causality"]] for r in results])
    sections = [describe(info), "## Models\n\n" + models]
    for s in set_names:
        rows = []
        for r in results:
            for x in r["evals"][s]["rows"]:
                rows.append([r["scale"], r["key"], tau_key(x["threshold"]), x["bpb"], x.get("bpb_se"),
                             x.get("scratchpad_rate", 0.0), x["flops_per_byte"], x.get("flops_ratio_vs_byte")])
        sections.append(f"## Held-out `{s}`\n\n" + table(["d", "model", "τ", "BPB", "± SE", "scratchpad rate",
                                                          "inference FLOPs/byte", "× byte baseline"], rows))
        gs = [p for p in g if p["set"] == s]
        if gs:
            sections.append(f"Gap to the byte baseline on `{s}` (paired over the same windows; negative = SP better):\n\n"
                            + table(["d", "trunk params", "byte BPB", "P16 SP best τ", "gap at best τ", "± SE",
                                     "gap at τ=1.5", "± SE", "plain P16 gap", "± SE"],
                                    [[p["scale"], p["trunk_params"], p["byte_bpb"], tau_key(p["best_tau"]), p["gap_best"],
                                      p["gap_best_se"], p.get("gap_default"), p.get("gap_default_se"), p.get("gap_plain"),
                                      p.get("gap_plain_se")] for p in gs]))
            sections.append("Trend: " + " ".join(
                trend_sentence(fits[s][k], f"{s} ({'best τ' if k == 'gap_best' else 'τ = 1.5'})",
                               [p[k] for p in gs if p.get(k) is not None])
                for k in ("gap_best", "gap_default")))
        sections.append(figures(out, results, g, s))
    sections.append(curves(out, results))
    write_report(out, "scale", "Where Scratchpad Patching pays: the trend with trunk size at equal training compute",
                 sections, dict(info, runs=json_runs(results, set_names), gaps=g, fits=fits))


def describe(info: dict) -> str:
    env = info["env"]
    start, end = env["start"], env.get("end", env["start"])
    equal = {"flops": "training FLOPs (the byte baseline's on the training bytes below)", "bytes": "training bytes",
             "time": "training time"}[info["budget"]]
    return (f"Command: `{info['command']}`\n\nAt each trunk width every model trains to equal {equal}: the byte "
            f"baseline's {info['steps']} steps of {info['batch_size']} x {info['seq_len']} bytes "
            f"({info['train_bytes']:,} bytes). Training FLOPs are counted by scratchpad.accounting.training_flops at "
            f"every step (3x the forward's multiply-adds x 2, at the step's counted commits and scratchpads). "
            f"Held-out scoring: windows of {info['window']} bytes from an empty context. Machine: CPU, cores "
            f"{start['cores']} of {start['cpu_count']} (taskset), {start['threads']} torch thread(s); each run's "
            f"training start is in the table; load average {fmt(start['loadavg'][0], 2)} when this command started "
            f"({start['time']}) and {fmt(end['loadavg'][0], 2)} at this report ({end['time']}); compare FLOPs, not "
            f"seconds, where other jobs shared the machine.")


def figures(out: Path, results: list[dict], g: list[dict], s: str) -> str:
    """BPB against inference FLOPs per byte, and the gap against trunk parameters, for set s."""
    series, points = [], []
    for r in results:
        rows = r["evals"][s]["rows"]
        if len(rows) > 1:
            series.append(dict(label=f"{r['key']} d={r['scale']} (τ sweep)", x=[x["flops_per_byte"] for x in rows],
                               y=[x["bpb"] for x in rows], annotate=[f"τ={tau_key(x['threshold'])}" for x in rows]))
        else:
            points.append(dict(label=f"{r['key']} d={r['scale']}", x=rows[0]["flops_per_byte"], y=rows[0]["bpb"]))
    md = []
    note = plot_xy(out / f"infer-{s}.png", series, "inference FLOPs per byte", "bits per byte",
                   f"BPB vs inference FLOPs, {s} (equal training compute per scale)", points=points, logx=True)
    md.append(f"_{note}_" if note else f"![BPB vs inference FLOPs, {s}](infer-{s}.png)")
    gs = [p for p in g if p["set"] == s]
    if gs:
        gap_series = [dict(label=label, x=[p["trunk_params"] for p in gs], y=[p.get(k) for p in gs],
                           err=[p.get(k + "_se") for p in gs])
                      for k, label in (("gap_best", "P16 SP at its best τ − byte"), ("gap_default", "P16 SP at τ=1.5 − byte"),
                                       ("gap_plain", "plain P16 − byte"))]
        note = plot_xy(out / f"gap-{s}.png", gap_series, "trunk parameters", "BPB gap to the byte baseline",
                       f"Gap vs trunk size, {s}", logx=True)
        md.append(f"_{note}_" if note else f"![gap vs trunk size, {s}](gap-{s}.png)")
    return "\n\n".join(md)


def curves(out: Path, results: list[dict]) -> str:
    """One panel per scale: validation BPB (τ = ∞, the trainer's fixed windows) against training FLOPs."""
    md = ["## Learning curves (validation BPB at τ = ∞ against cumulative training FLOPs)"]
    for d in sorted({r["scale"] for r in results}):
        series = [dict(label=r["key"], x=[c[0] for c in r["curve"]], y=[c[1] for c in r["curve"]])
                  for r in results if r["scale"] == d and r.get("curve")]
        if not series:
            continue
        note = plot_xy(out / f"train-d{d}.png", series, "training FLOPs", "validation bits per byte",
                       f"Learning curves at trunk width {d}", logx=True)
        md.append(f"_{note}_" if note else f"![learning curves at d={d}](train-d{d}.png)")
    return "\n\n".join(md)


def write_pilot(out: Path, results: list[dict], info: dict):
    """The local-design pilot: P16 SP per local design at one trunk width, equal FLOPs."""
    set_names = [s["name"] for s in info["sets"]]
    rows = []
    for r in results:
        line = [r["local"], r["params"], r["steps"], r["train_bytes"], r["train_flops"]]
        for s in set_names:
            inf_row, d_row = row_at(r, s, math.inf), row_at(r, s, TAU_DEFAULT)
            line += [inf_row["bpb"] if inf_row else None, d_row["bpb"] if d_row else None]
        rows.append(line + [r["causality"]])
    score = {r["local"]: np.mean([row_at(r, s, TAU_DEFAULT)["bpb"] for s in set_names]) for r in results
             if all(row_at(r, s, TAU_DEFAULT) for s in set_names)}
    best = min(score, key=score.get) if score else None
    heads = ["local span x width", "params", "steps", "training bytes", "training FLOPs"]
    heads += [f"{s} BPB τ={t}" for s in set_names for t in ("∞", "1.5")] + ["causality"]
    sections = [describe(info), table(heads, rows),
                f"Best at τ = 1.5 (mean over held-out sets): **{best}**" if best else "No complete design yet."]
    write_report(out, "pilot", f"Local-design pilot for {SP} at equal training FLOPs", sections,
                 dict(info, runs=json_runs(results, set_names), best=best, score=score))
