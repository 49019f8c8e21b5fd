"""`scratchpad eval scale`: where Scratchpad Patching pays -- the trend with trunk size at equal
training compute.

    scratchpad eval scale --data /work/data/text --eval-data /work/data/text,/work/data/code \
        --trunk-dims 128,192,256 --train-bytes 1M --runs /work/runs/scale --out eval/reports/scale --threads 1
    scratchpad eval scale --pilot --trunk-dims 128 --locals 4x64,16x64,64x64,4x128,16x128,64x128 ...

At each trunk width d (trunk depth 6, ssm/attn alternating; local models, aux depth 2 and everything
else fixed) every model trains until it has spent the same training FLOPs: what the byte baseline
spends on --train-bytes (`--budget flops`, scratchpad.accounting.training_flops; or equal bytes or
time with --budget). The models, all with the same trunk:

    byte      every byte a patch, no scratchpads: the byte-level baseline
    p16-plain fixed P = 16, no scratchpads
    p16-sp    fixed P = 16 with scratchpads (SP), evaluated over the tau sweep
    p4-sp     SP at P = 4
    bpe       a BPE tokenizer (sentencepiece) and the same trunk over tokens

Every byte model logs validation BPB against cumulative training FLOPs while it trains, is scored
on every held-out set in windows (eval/windows.py) at every tau, and passes (or fails, in the
report) the causality audit on its trained weights. `--pilot` instead trains P16 SP with each
local design of --locals (local attention span x local width) at the first trunk width, every
design to the FLOPs the byte baseline with the first design spends, and reports which does best. Finished runs are reused and unfinished ones continue exactly, so
the command can span sessions; the report is rewritten after every model (eval/experiments/scale_report.py).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path

from eval.cli_args import add_training_and_scoring_flags, parse_list, parse_size, parse_thresholds
from eval.experiments.reproduce import evaluate_model, training_budget
from eval.experiments.scale_report import write_pilot, write_scale
from eval.experiments.training import train_variant
from eval.report import out_folder
from eval.windows import eval_bytes
from scratchpad import ModelConfig
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag, parse_duration, parse_int_flag, set_threads

MODELS = {"byte": "heavy-byte", "p16-plain": "heavy-p16-plain", "p16-sp": "heavy-p16", "p4-sp": "heavy-p4", "bpe": "heavy-byte"}
DEFAULT_MODELS = "byte,p16-plain,p16-sp,bpe"
DEFAULT_THRESHOLDS = "0,1.5,3,inf"
PILOT_MODEL = "p16-sp"


def parse_dims(text: str, flag: str = "--trunk-dims") -> list[int]:
    return parse_list(text, flag, lambda t, f: parse_int_flag(f, t, 8))


def parse_local(text: str, flag: str = "--local") -> tuple[int, int]:
    """'4x64' -> (local attention span 4, local width 64)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2:
        raise UserError(f"{flag}: {text!r} is not SPANxWIDTH (example: 4x64)")
    return parse_int_flag(flag, parts[0], 1), parse_int_flag(flag, parts[1], 4)


def scale_config(key: str, d: int, local: tuple[int, int], tiny: bool) -> ModelConfig:
    """The model `key` with trunk width d and local design (span, width); aux depth 2."""
    base = ModelConfig.preset(("tiny-" if tiny else "") + MODELS[key])
    span, width = local
    return dataclasses.replace(base, name=f"{key}-d{d}-span{span}-w{width}", d_model=d, d_local=width,
                               local_attn_span=span, n_aux_layers=2).validate()


def environment(a) -> dict:
    """Core pinning and load, stated in the report."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return dict(cores=cores, cpu_count=os.cpu_count(), threads=a.threads, loadavg=list(os.getloadavg()),
                time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))


def train_bpe(key: str, cfg: ModelConfig, run: Path, sets: list[dict], budget: dict, a) -> dict:
    """The BPE baseline with this trunk: trained once into run/baseline (reused after), scored per set."""
    from eval.experiments.tokenizer_baseline import TokenBaseline, train_baseline

    folder = run / "baseline"
    if (folder / "token_lm.json").is_file():
        tb = TokenBaseline.load(folder)
        print("  reused a finished run", flush=True)
    else:
        run.mkdir(parents=True, exist_ok=True)
        tb = train_baseline(a.data, cfg, sample_bytes=a.bpe_sample_bytes, train_bytes=a.bpe_train_bytes,
                            seq_len_bytes=a.seq_len, batch_size=a.batch_size, lr=a.lr, warmup=a.warmup, seed=a.seed,
                            log=lambda s: print("  " + s, flush=True), **budget)
        tb.save(folder)
    evals = {}
    for s in sets:
        r = tb.evaluate(s["arr"], a.eval_batch)
        evals[s["name"]] = dict(rows=[dict(threshold=float("inf"), **r)])
        print(f"  {s['name']}: bpe {r['bpb']:.4f}", flush=True)
    m = tb.meta
    return dict(key=key, name=cfg.name, params=tb.params, trunk_params=None, scratchpad=False, steps=m["steps"],
                train_flops=m["train_flops"], train_bytes=m["train_bytes"], train_seconds=m["train_seconds"],
                causality="n/a (token model)", causality_passed=None, evals=evals, curve=[])


def from_log(run: Path) -> dict:
    """What the run's log says beyond the evaluation: its learning curve ([[cumulative training FLOPs,
    val BPB at tau = inf]] at each eval event) and when it started training."""
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    flops = {e["step"]: e.get("flops") for e in log if e.get("event") == "step"}
    return dict(curve=[[flops[e["step"]], e["val_bpb"]] for e in log if e.get("event") == "eval" and flops.get(e["step"])],
                started=next((e.get("time") for e in log if e.get("event") == "start"), None))


def run_model(key: str, cfg: ModelConfig, folder: Path, sets: list[dict], taus: list[float], budget: dict, a) -> dict:
    """Train (or reuse / resume) one model and evaluate it."""
    from scratchpad import build_model
    from scratchpad.accounting import parameter_counts

    print(f"{key} ({cfg.name}) -> {folder}", flush=True)
    if key == "bpe":
        res = train_bpe(key, cfg, folder, sets, budget, a)
    else:
        cfg_path = folder.parent / f"{key}.config.json"
        folder.parent.mkdir(parents=True, exist_ok=True)
        cfg_path.write_text(cfg.to_json())
        t0 = time.perf_counter()
        reused = train_variant(None, a, folder, config=str(cfg_path), resume_unfinished=True)[0]
        print(f"  {'reused a finished run' if reused else f'trained in {time.perf_counter() - t0:.0f}s'}", flush=True)
        res = evaluate_model(key, folder, sets, taus if cfg.scratchpad else [float("inf")], a)
        res.update(from_log(folder))
    res["trunk_params"] = parameter_counts(build_model(cfg))["trunk"]
    res["d_model"] = cfg.d_model
    return res


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval scale", description=describe(__doc__))
    ap.add_argument("--data", required=True, help="training corpus folder (train.bin, val.bin)")
    ap.add_argument("--eval-data", help="comma-separated held-out corpus folders (default: --data's val.bin)")
    ap.add_argument("--out", required=True, help="report folder (scale.md/json, or pilot.md/json with --pilot)")
    ap.add_argument("--runs", required=True, help="folder for the training runs (reused when finished, resumed when not)")
    ap.add_argument("--trunk-dims", default="128,192,256", help="trunk widths, the scale axis (default 128,192,256)")
    ap.add_argument("--models", default=DEFAULT_MODELS, help=f"subset of {','.join(MODELS)} (default {DEFAULT_MODELS})")
    ap.add_argument("--budget", default="flops", help="what is equal across models at one scale: flops (default), bytes, time")
    ap.add_argument("--train-bytes", default="1M", help="the byte baseline's training bytes; they set the FLOP budget")
    ap.add_argument("--time-budget", help="training time per model with --budget time")
    ap.add_argument("--local", default="4x64", help="local design SPANxWIDTH: attention span and width (default 4x64)")
    ap.add_argument("--pilot", action="store_true", help=f"train {PILOT_MODEL} per --locals design at the first trunk width")
    ap.add_argument("--locals", default="4x64,16x64,64x64,4x128,16x128,64x128", help="the pilot's local designs")
    ap.add_argument("--thresholds", default=DEFAULT_THRESHOLDS, help=f"τ values for SP models (default {DEFAULT_THRESHOLDS})")
    ap.add_argument("--tiny", action="store_true", help="the tiny-* forms (for tests)")
    ap.add_argument("--curve-points", type=int_flag("--curve-points"), default=10,
                    help="validation evaluations over the byte baseline's steps (the learning curves)")
    ap.add_argument("--bpe-sample-bytes", type=int_flag("--bpe-sample-bytes", 1000), default=4 << 20)
    ap.add_argument("--bpe-train-bytes", type=int_flag("--bpe-train-bytes", 1000), default=32 << 20)
    add_training_and_scoring_flags(ap, warmup=50)
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    command = "scratchpad eval scale " + " ".join(sys.argv[1:] if argv is None else argv)
    dims = parse_dims(a.trunk_dims)
    keys = parse_list(a.models, "--models", lambda t, f: t)
    for k in keys:
        if k not in MODELS:
            raise UserError(f"--models: unknown model {k!r}; choose from {', '.join(MODELS)}")
    locals_ = parse_list(a.locals, "--locals", parse_local) if a.pilot else [parse_local(a.local)]
    if a.pilot:
        dims, keys = dims[:1], [PILOT_MODEL]
    taus = sorted(set(parse_thresholds(a.thresholds)) | {float("inf")}, reverse=True)
    a.time_budget = parse_duration(a.time_budget, "--time-budget") if a.time_budget else None
    if not (a.lr > 0):
        raise UserError(f"--lr {a.lr}: must be a positive number")
    steps = max(1, -(-parse_size(a.train_bytes, "--train-bytes") // (a.batch_size * a.seq_len)))
    plan = {}  # (d, local) -> {key: config}
    for d in dims:
        for local in locals_:
            try:
                plan[(d, local)] = {k: scale_config(k, d, local, a.tiny) for k in keys}
            except UserError as e:
                raise UserError(f"--trunk-dims {d} / local {local[0]}x{local[1]}: {e}") from None
    a.window = min([a.window] + [c.max_seq_len for cs in plan.values() for c in cs.values()])
    sets = []
    for path in (a.eval_data or a.data).split(","):
        arr, info = eval_bytes(path.strip(), "val", a.eval_bytes, a.window)
        sets.append(dict(name=Path(path.strip()).name or "data", arr=arr, bytes=len(arr), **info))
    set_threads(a.threads)
    out, runs = out_folder(a.out), out_folder(a.runs)
    a.eval_every, a.eval_windows = max(1, steps // a.curve_points), 16
    env = dict(start=environment(a))
    results = []
    for (d, local), configs in plan.items():
        # the pilot compares local designs at one budget: the byte baseline's with the first design
        byte_cfg = scale_config("byte", d, locals_[0] if a.pilot else local, a.tiny)
        budget = training_budget(a.budget, steps, byte_cfg, configs, a)
        a.steps, a.flops_budget = budget["steps"], budget["flops_budget"]
        tag = f"d{d}" + (f"-span{local[0]}-w{local[1]}" if a.pilot or local != (4, 64) else "")
        for k, cfg in configs.items():
            res = run_model(k, cfg, runs / tag / k, sets, taus, budget, a)
            res.update(scale=d, local=f"{local[0]}x{local[1]}", budget=budget)
            results.append(res)
            env["end"] = environment(a)
            info = dict(command=command, steps=steps, train_bytes=steps * a.batch_size * a.seq_len, budget=a.budget,
                        batch_size=a.batch_size, seq_len=a.seq_len, window=a.window, env=env, taus=taus,
                        sets=[{k2: v for k2, v in s.items() if k2 != "arr"} for s in sets])
            (write_pilot if a.pilot else write_scale)(out, results, info)
    print(f"-> {out / ('pilot.md' if a.pilot else 'scale.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
