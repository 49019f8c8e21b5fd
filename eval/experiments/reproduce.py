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
(scratchpad/accounting.py), and the causality audit of the trained weights. The report checks
the paper's targets at P = 16 and says which are met. Finished runs under --runs are reused;
an unfinished one continues exactly (`--resume`), so the command can span sessions.
Writes reproduce.md, reproduce.json, reproduce.png (BPB vs inference FLOPs per byte) and
lag-<model>.png into --out.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import math
import sys
import time
from pathlib import Path

import torch

from eval.cli_args import parse_thresholds
from eval.experiments.bpb import run_bpb
from eval.experiments.lag import lag_figures
from eval.experiments.lag_cli import lag_plots
from eval.experiments.variants import read_log, train_variant
from eval.report import fmt, jsonable, out_folder, plot_xy, table, write_report
from eval.windows import WINDOWING, default_window, eval_bytes
from scratchpad import ModelConfig, load_model
from scratchpad.accounting import parameter_counts, training_flops
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, add_threads_flag, describe, int_flag, parse_duration, set_threads

MODELS = [("byte", "heavy-byte"), ("p16-plain", "heavy-p16-plain"), ("p16", "heavy-p16"), ("p8", "heavy-p8"),
          ("p4", "heavy-p4")]
SCALES = {"cpu": {}, "gpu": dict(d_model=512, d_local=96, n_heads=8, trunk_mixers=["ssm", "attn"] * 4)}
DEFAULT_THRESHOLDS = "0,0.5,1,1.5,2,2.5,3,4,inf"
CLOSE_TO_DENSE = 0.02  # "BPB within 0.02 of its τ = 0 value"


def model_config(preset: str, scale: str) -> ModelConfig:
    cfg = ModelConfig.preset(preset)
    if preset.startswith("tiny-") or not SCALES[scale]:
        return cfg
    return dataclasses.replace(cfg, name=f"{cfg.name}-{scale}", **SCALES[scale]).validate()


def parse_size(text: str, flag: str) -> int:
    """'4M', '512k', '1G' or a plain integer -> bytes."""
    s = str(text).strip().upper().removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        v = float(s[:-1] if mult > 1 else s) * mult
    except ValueError:
        raise UserError(f"{flag}: {text!r} is not a size (examples: 4M, 512k, 1000000)") from None
    if not math.isfinite(v) or v < 1:
        raise UserError(f"{flag}: {text!r} must be a positive size")
    return int(v)


BUDGETS = ("flops", "bytes", "time")


def logged_flops(log: list[dict]) -> float:
    """Training FLOPs of a run: the sum of its step events' `model_flops` (the trainer counts them
    with scratchpad.accounting.training_flops from each step's commits and scratchpads)."""
    return float(sum(e.get("model_flops", 0.0) for e in log if e.get("event") == "step"))


def step_flops_floor(cfg: ModelConfig, batch: int, seq_len: int) -> float:
    """Training FLOPs of one step without scratchpads (fixed patches): the least a step can cost."""
    return training_flops(cfg, batch, seq_len, commits=batch * (seq_len // cfg.patch_size), scratchpads=0)


def training_budget(kind: str, steps: int, byte_cfg: ModelConfig, configs: dict, a) -> dict:
    """The TrainArgs budget fields every model of one comparison trains to:
    flops  -> the byte baseline's training FLOPs for `steps` steps (`--train-bytes`), for every model;
    bytes  -> `steps` steps for every model (equal data);
    time   -> `a.time_budget` seconds of training-step time for every model."""
    if kind not in BUDGETS:
        raise UserError(f"--budget {kind!r}: choose from {', '.join(BUDGETS)}")
    if kind == "bytes":
        return dict(steps=steps, time_budget=None, flops_budget=None)
    if kind == "time":
        if not a.time_budget:
            raise UserError("--budget time needs --time-budget DURATION")
        return dict(steps=None, time_budget=a.time_budget, flops_budget=None)
    budget = steps * step_flops_floor(byte_cfg, a.batch_size, a.seq_len)
    for k, cfg in configs.items():
        floor = step_flops_floor(cfg, a.batch_size, a.seq_len)
        if budget < floor:
            raise UserError(f"--train-bytes: the FLOP budget {budget:.3e} is less than one training step of {k} "
                            f"({floor:.3e}); use more --train-bytes")
    return dict(steps=None, time_budget=None, flops_budget=budget)


def evaluate_model(key: str, run: Path, sets: list[dict], taus: list[float], a) -> dict:
    """Every number of one trained model: per eval set, rows per τ with lag profiles and the figures.
    Kept in run/eval.json and reused while the checkpoint and the evaluation settings are the same."""
    from eval.causality import audit_model

    folder = run / "last"
    settings = jsonable(dict(checkpoint_mtime=(folder / "model.safetensors").stat().st_mtime_ns, taus=taus,
                             window=a.window, eval_batch=a.eval_batch, audit_positions=a.audit_positions,
                             sets=[[s["path"], s["bytes"]] for s in sets]))
    cache = run / "eval.json"
    if cache.is_file():
        try:
            saved = json.loads(cache.read_text(), parse_constant=float)
        except json.JSONDecodeError:
            saved = {}
        if saved.get("settings") == settings:
            print("  reused its evaluation (eval.json)", flush=True)
            return restore_inf(saved["result"])
    model = load_model(folder).float().eval().to(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = model.cfg
    log = read_log(run)
    end = next((e for e in reversed(log) if e.get("event") == "end"), {})
    params = parameter_counts(model)
    res = dict(key=key, name=cfg.name, checkpoint=str(folder), params=params["total"],
               trunk_param_share=params["trunk"] / params["total"], patch_size=cfg.patch_size, scratchpad=cfg.scratchpad,
               steps=sum(e.get("event") == "step" for e in log), train_seconds=end.get("elapsed"),
               train_flops=logged_flops(log), train_bytes=sum(e.get("event") == "step" for e in log) * a.batch_size * a.seq_len,
               evals={})
    for s in sets:
        rows = [run_bpb(model, s["arr"], a.window, tau, a.eval_batch, lag=True)
                for tau in (taus if cfg.scratchpad else [math.inf])]
        res["evals"][s["name"]] = dict(rows=rows, **lag_figures(model, s["arr"], a.window, rows, a.eval_batch))
        print(f"  {s['name']}: " + ", ".join(f"tau {fmt(r['threshold'])} {r['bpb']:.4f}" for r in rows), flush=True)
    audit = audit_model(load_model(folder), key, length=min(160, cfg.max_seq_len), positions=a.audit_positions)
    res.update(causality="PASS" if audit.passed else f"FAIL (first leaking position {audit.first_leak})",
               causality_passed=audit.passed, causality_checks=audit.checks)
    del model
    gc.collect()
    cache.write_text(json.dumps(jsonable(dict(settings=settings, result=res))))
    return res


def restore_inf(v):
    """Undo jsonable's "inf" strings (thresholds) after reading a cached evaluation."""
    if v == "inf":
        return math.inf
    if isinstance(v, dict):
        return {k: restore_inf(x) for k, x in v.items()}
    if isinstance(v, list):
        return [restore_inf(x) for x in v]
    return v


def targets(models: dict, set_name: str) -> list[dict]:
    """The paper's claims at P = 16, checked on one eval set."""
    byte, plain, sp = (models.get(k, {}).get("evals", {}).get(set_name) for k in ("byte", "p16-plain", "p16"))
    if not (byte and plain and sp):
        return []
    b, p = byte["rows"][0], plain["rows"][0]
    best = min(sp["rows"], key=lambda r: r["bpb"])
    dense = next(r for r in sp["rows"] if r["threshold"] == 0)
    gap = p["bpb"] - b["bpb"]
    closed = (p["bpb"] - best["bpb"]) / gap if gap > 0 else None
    near = [r for r in sp["rows"] if r["bpb"] <= dense["bpb"] + CLOSE_TO_DENSE]
    cheap = min(near, key=lambda r: r["flops_per_byte"])
    inf_row = next(r for r in sp["rows"] if math.isinf(r["threshold"]))
    s_inf, s_0 = inf_row["lag"]["offset_slope"], dense["lag"]["offset_slope"]
    rising = s_inf["slope"] is not None and s_inf["slope"] > 2 * s_inf["se"]
    flat = s_0["slope"] is not None and abs(s_0["slope"]) <= 2 * s_0["se"]
    return [
        dict(target="SP at its best τ closes ≥ 50% of the BPB gap between plain P=16 and the byte baseline",
             value=(f"{fmt(closed)} (plain {p['bpb']:.4f}, SP {best['bpb']:.4f} at τ={fmt(best['threshold'])}, byte "
                    f"{b['bpb']:.4f})" if closed is not None else
                    f"no gap: plain P=16 {p['bpb']:.4f} is not worse than the byte baseline {b['bpb']:.4f}"),
             met=closed is not None and closed >= 0.5),
        dict(target=f"at BPB within {CLOSE_TO_DENSE} of its τ = 0 value, ≤ 1/3 of the byte baseline's inference FLOPs",
             value=f"{fmt(cheap['flops_ratio_vs_byte'])}x at τ={fmt(cheap['threshold'])} (BPB {cheap['bpb']:.4f} vs "
                   f"{dense['bpb']:.4f} at τ=0)", met=cheap["flops_ratio_vs_byte"] <= 1 / 3),
        dict(target="KV per byte exactly 1/16 of the byte baseline", value=fmt(best["kv_ratio_vs_byte"]),
             met=all(r["kv_ratio_vs_byte"] == 1 / 16 for r in sp["rows"])),
        dict(target="lag profile at τ = ∞ rises with lag (slope > 2 standard errors)",
             value=f"{fmt(s_inf['slope'])} ± {fmt(s_inf['se'])} bits/byte per byte of lag", met=rising),
        dict(target="lag profile at τ = 0 is flat within noise (|slope| ≤ 2 standard errors)",
             value=f"{fmt(s_0['slope'])} ± {fmt(s_0['se'])}", met=flat),
    ]


def budget_text(a) -> str:
    if a.flops_budget:
        return f"an equal training-FLOP budget of {a.flops_budget:.4e} (the byte baseline's on --train-bytes)"
    if a.time_budget:
        return f"an equal budget of {a.time_budget:g} s of training-step time"
    return f"equal training data ({a.steps} steps)"


def report(out: Path, models: dict, sets: list[dict], a, steps: int, command: str):
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
        tg = targets(models, name)
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
    result = dict(command="reproduce", argv=command, data=str(a.data), steps=steps, batch_size=a.batch_size,
                  seq_len=a.seq_len, budget=a.budget, flops_budget=a.flops_budget, time_budget=a.time_budget,
                  train_bytes=steps * a.batch_size * a.seq_len, scale=a.scale, window=a.window,
                  models=models, targets={s["name"]: targets(models, s["name"]) for s in sets},
                  eval_sets=[{k: v for k, v in s.items() if k != "arr"} for s in sets])
    equal = {"flops": "training compute", "bytes": "training data", "time": "training time"}[a.budget]
    write_report(out, "reproduce", f"Scratchpad Patching at equal {equal}: byte baseline, P=16, SP at P=4/8/16",
                 sections, result)


def add_training_and_scoring_flags(ap, warmup: int):
    """The flags every model of a comparison shares (eval reproduce, eval scale): batches, schedule,
    seed, held-out scoring, the causality audit, threads and device."""
    ap.add_argument("--batch-size", type=int_flag("--batch-size"), default=8)
    ap.add_argument("--seq-len", type=int_flag("--seq-len", 2), default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int_flag("--warmup", 0), default=warmup)
    ap.add_argument("--seed", type=int_flag("--seed", 0), default=0)
    ap.add_argument("--window", type=int_flag("--window", 2), default=1024, help="evaluation window (default 1024)")
    ap.add_argument("--eval-bytes", type=int_flag("--eval-bytes", 2), default=(1 << 16) + 1,
                    help="held-out bytes per set (default 65537: 64 full windows of 1024)")
    ap.add_argument("--eval-batch", type=int_flag("--eval-batch"), default=8)
    ap.add_argument("--audit-positions", type=int_flag("--audit-positions"), default=6)
    add_threads_flag(ap)
    ap.add_argument("--device", choices=["cpu", "cuda"])


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
    a.steps, a.time_budget, a.flops_budget = budget["steps"], budget["time_budget"], budget["flops_budget"]
    a.eval_every, a.eval_windows = 0, 16
    models = {}
    for k, cfg in configs.items():
        run = runs / k
        cfg_path = runs / f"{k}.config.json"
        cfg_path.write_text(cfg.to_json())
        print(f"{k} ({cfg.name}): {budget_text(a)} -> {run}", flush=True)
        t0 = time.perf_counter()
        reused = train_variant(None, a, run, config=str(cfg_path), resume_unfinished=True)[0]
        print(f"  {'reused a finished run' if reused else f'trained in {time.perf_counter() - t0:.0f}s'}", flush=True)
        models[k] = evaluate_model(k, run, sets, taus, a)
    report(out, models, sets, a, steps, command)
    for s in sets:
        for t in targets(models, s["name"]):
            print(f"{s['name']}: {'MET ' if t['met'] else 'MISS'} {t['target']}: {t['value']}")
    print(f"-> {out / 'reproduce.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
