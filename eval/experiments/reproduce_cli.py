"""`scratchpad eval reproduce`: the Scratchpad Patching headline, as a controlled experiment.

    scratchpad eval reproduce --data /work/data/mix --eval-data /work/data/text,/work/data/code \
        --train-bytes 4M --runs /work/runs/reproduce --out eval/reports/reproduce-cpu
    scratchpad eval reproduce --scale gpu --train-bytes 400M --batch-size 32 --seq-len 1024 ...   # the same, larger

Five models of one design (the trunk-heavy `heavy-*` presets, or their `--scale gpu` form) are
trained on the same bytes: the same corpus, number of steps, batch, sequence length and seed, so
the same batches in the same order:

    byte      every byte a patch, no scratchpads: the byte-level baseline of equal trunk
    p16-plain fixed P = 16, no scratchpads
    p16       fixed P = 16 with scratchpads (SP)
    p8, p4    SP at P = 8 and P = 4

Training compute is not equal (the byte baseline runs its trunk 16x as often); each model's
training FLOPs and wall clock are reported beside it. Every SP model is evaluated at every τ,
the others at τ = ∞, on the same held-out windows (eval/windows.py), with the lag profile, the
trunk's share and the aux head's own BPB (eval/experiments/lag.py), inference FLOPs and KV bytes per byte
(scratchpad/accounting.py), the trunk KV the engine holds after decoding a sample (against the byte
baseline's), and the causality audit of the trained weights. The report checks
the paper's targets at P = 16 and says which are met. Finished runs under --runs are reused;
an unfinished one continues exactly (`--resume`), so the command can span sessions.
Writes reproduce.md, reproduce.json, reproduce.png (BPB vs inference FLOPs per byte) and
lag-<model>.png into --out.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

from eval.cli_args import add_training_and_scoring_flags, parse_size, parse_thresholds
from eval.experiments.lag_cli import lag_plots
from eval.experiments.reproduce import (MODELS, SCALES, Plan, ReproduceResult, budget_text, model_config, run,
                                        training_budget)
from eval.report import fmt, out_folder, plot_xy, table, write_report
from eval.windows import WINDOWING, default_window, eval_bytes
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, parse_duration, set_threads

DEFAULT_THRESHOLDS = "0,0.5,1,1.5,2,2.5,3,4,inf"


def render(res: ReproduceResult, out: Path, command: str) -> None:
    """reproduce.md, reproduce.json, reproduce-<set>.png and the SP models' lag pictures into out."""
    models, sets, a, steps = res.models, res.sets, res.plan, res.byte_steps
    sections = [
        f"Command: `{command}`\n\nEvery model trained with {budget_text(a)} on `{a.data}` (batches of "
        f"{a.batch_size} x {a.seq_len} bytes, seed {a.seed}: the same batches in the same order, as far as each "
        f"model's budget reaches; the byte baseline's {steps} steps = {steps * a.batch_size * a.seq_len:,} bytes define "
        f"the budget), lr {a.lr:g}, warmup {a.warmup}, scale `{a.scale}`, device {a.device or 'default'}, {a.threads or 'default'} "
        f"thread(s). Evaluation: {WINDOWING.format(W=a.window)}; FLOPs and KV per byte are the inference accounting "
        "(scratchpad/accounting.py) of the parallel forward's events against the byte-level baseline of equal trunk.",
        "## Models\n\n" + table(
            ["model", "config", "params", "trunk share of params", "steps", "training FLOPs", "training time (s)",
             "causality audit (trained weights)"],
            [[k, m["name"], m["params"], m["trunk_param_share"], m["steps"], m["train_flops"], m["train_seconds"],
              m["causality"]] for k, m in models.items()])
        + "\n\nTraining FLOPs = 3x the forward accounting at each step's scratchpad rate (an estimate: backward ≈ 2x "
          "forward).",
    ]
    for s in sets:
        name = s["name"]
        body = []
        for k, m in models.items():
            ev = m["evals"][name]
            for r in ev["rows"]:
                body.append([k, r["threshold"], r["bpb"], r["scratchpad_rate"], r.get("gap_closed"), r["flops_per_byte"],
                             r["flops_ratio_vs_byte"], r["kv_ratio_vs_byte"], r["lag"]["offset_slope"]["slope"],
                             r["lag"]["offset_slope"]["se"]])
        figs = [[k, m["evals"][name]["bpb_plain"], m["evals"][name]["bpb_without_trunk"], m["evals"][name]["trunk_share"],
                 m["evals"][name]["aux_bpb"]] for k, m in models.items()]
        tg = res.targets[name]
        sections += [
            f"## Held-out `{s['path']}` ({s['bytes']:,} bytes)",
            table(["model", "τ", "BPB", "scratchpad rate", "τ=∞→τ=0 gap closed", "FLOPs / byte", "FLOPs × byte",
                   "KV × byte", "lag slope (bits/byte per byte)", "± se"], body),
            "Trunk's share and aux head:\n\n" + table(["model", "BPB τ=∞", "BPB without trunk", "trunk's share",
                                                       "aux head alone"], figs),
        ]
        if tg:
            sections.append("Targets at P = 16:\n\n" + table(["target", "measured", "met"],
                                                             [[t["target"], t["value"], t["met"]] for t in tg]))
        series = [dict(label=f"{k} (τ sweep)", x=[r["flops_per_byte"] for r in m["evals"][name]["rows"]],
                       y=[r["bpb"] for r in m["evals"][name]["rows"]],
                       annotate=[f"τ={fmt(r['threshold'], 2)}" for r in m["evals"][name]["rows"]] if k == "p16" else None)
                  for k, m in models.items() if m["scratchpad"]]
        points = [dict(label=k, x=m["evals"][name]["rows"][0]["flops_per_byte"], y=m["evals"][name]["rows"][0]["bpb"])
                  for k, m in models.items() if not m["scratchpad"]]
        png = f"reproduce-{name}.png"
        note = plot_xy(out / png, series, "inference FLOPs per byte", "bits per byte",
                       f"BPB vs inference FLOPs, {name} (equal training bytes)", points=points, logx=True)
        sections.append(f"_{note}_" if note else f"![BPB vs inference FLOPs per byte]({png})")
        for k, m in models.items():
            if m["scratchpad"] and lag_plots(out, m["evals"][name]["rows"], f"{k}, {name}", stem=f"lag-{name}-{k}") is None:
                sections.append(f"![lag profile of {k}](lag-{name}-{k}.png)")
    equal = {"flops": "training compute", "bytes": "training data", "time": "training time"}[a.budget]
    write_report(out, "reproduce", f"Scratchpad Patching at equal {equal}: byte baseline, P=16, SP at P=4/8/16",
                 sections, res.json(command))


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval reproduce", description=describe(__doc__))
    ap.add_argument("--data", required=True, help="training corpus folder (train.bin, val.bin)")
    ap.add_argument("--eval-data", help="comma-separated held-out corpus folders or byte files (default: --data's val.bin)")
    ap.add_argument("--out", required=True, help="report folder")
    ap.add_argument("--runs", required=True, help="folder for the training runs (reused when finished, resumed when not)")
    ap.add_argument("--train-bytes", default="4M", help="training bytes of the byte baseline (default 4M): with --budget "
                    "flops every model spends the FLOPs the byte baseline spends on them; with --budget bytes every "
                    "model trains on them")
    ap.add_argument("--budget", default="flops", help="what is equal across models: flops (default; training FLOPs), "
                    "bytes (training data) or time (--time-budget of training-step time)")
    ap.add_argument("--time-budget", help="training time per model with --budget time (20m, 90s)")
    ap.add_argument("--scale", choices=sorted(SCALES), default="cpu", help="model size (default cpu: the heavy-* presets)")
    ap.add_argument("--models", default=",".join(k for k, _ in MODELS), help="subset of " + ",".join(k for k, _ in MODELS))
    ap.add_argument("--tiny", action="store_true", help="the tiny-* test forms (for tests)")
    ap.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, help=f"τ values for SP models (default {DEFAULT_THRESHOLDS})")
    add_training_and_scoring_flags(ap, warmup=100)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    command = "scratchpad eval reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
    taus = sorted(set(parse_thresholds(a.thresholds)) | {0.0, math.inf}, reverse=True)
    keys = [k.strip() for k in a.models.split(",") if k.strip()]
    known = dict(MODELS)
    for k in keys:
        if k not in known:
            raise UserError(f"--models: unknown model {k!r}; choose from {', '.join(known)}")
    if not (a.lr > 0 and math.isfinite(a.lr)):
        raise UserError(f"--lr {a.lr}: must be a positive number")
    steps = max(1, -(-parse_size(a.train_bytes, "--train-bytes") // (a.batch_size * a.seq_len)))
    a.time_budget = parse_duration(a.time_budget, "--time-budget") if a.time_budget else None
    configs = {k: model_config(("tiny-" if a.tiny else "") + known[k], a.scale) for k in keys}
    budget = training_budget(a.budget, steps, model_config(("tiny-" if a.tiny else "") + known["byte"], a.scale),
                             configs, a)
    a.window = default_window(next(iter(configs.values())), min(a.window, *(c.max_seq_len for c in configs.values())))
    sets = []
    for d in (a.eval_data or a.data).split(","):
        arr, info = eval_bytes(d.strip(), "val", a.eval_bytes, a.window)
        sets.append(dict(name=Path(d.strip()).name or "data", arr=arr, bytes=len(arr), **info))
    if len({s["name"] for s in sets}) != len(sets):
        raise UserError("--eval-data: two sets share a name")
    set_threads(a.threads)
    out, runs = out_folder(a.out), out_folder(a.runs)
    plan = Plan(data=a.data, batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr, warmup=a.warmup, seed=a.seed,
                window=a.window, eval_batch=a.eval_batch, audit_positions=a.audit_positions, threads=a.threads,
                device=a.device, scale=a.scale, budget=a.budget, **budget)
    res = run(plan, configs, sets, taus, runs, steps, log=lambda line: print(line, flush=True))
    render(res, out, command)
    for s in sets:
        for t in res.targets[s["name"]]:
            print(f"{s['name']}: {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}")
    print(f"-> {out / 'reproduce.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
