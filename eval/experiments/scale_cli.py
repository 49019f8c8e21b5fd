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

import sys
from pathlib import Path

from eval.cli_args import add_training_and_scoring_flags, parse_list, parse_size, parse_thresholds
from eval.experiments.scale import (DEFAULT_MODELS, DEFAULT_THRESHOLDS, MODELS, PILOT_MODEL, ScalePlan, environment,
                                    run, scale_config)
from eval.experiments.scale_report import write_pilot, write_scale
from eval.report import out_folder
from eval.windows import eval_bytes
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag, parse_duration, parse_int_flag, set_threads


def parse_dims(text: str, flag: str = "--trunk-dims") -> list[int]:
    """'128,192' -> trunk widths (integers >= 8)."""
    return parse_list(text, flag, lambda t, f: parse_int_flag(f, t, 8))


def parse_local(text: str, flag: str = "--local") -> tuple[int, int]:
    """'4x64' -> (local attention span 4, local width 64)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2:
        raise UserError(f"{flag}: {text!r} is not SPANxWIDTH (example: 4x64)")
    return parse_int_flag(flag, parts[0], 1), parse_int_flag(flag, parts[1], 4)


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
    grid, byte_configs = {}, {}  # (d, local) -> {key: config}, and the byte baseline that sets its budget
    for d in dims:
        for local in locals_:
            try:
                grid[(d, local)] = {k: scale_config(k, d, local, a.tiny) for k in keys}
            except UserError as e:
                raise UserError(f"--trunk-dims {d} / local {local[0]}x{local[1]}: {e}") from None
            # the pilot compares local designs at one budget: the byte baseline's with the first design
            byte_configs[(d, local)] = scale_config("byte", d, locals_[0] if a.pilot else local, a.tiny)
    a.window = min([a.window] + [c.max_seq_len for cs in grid.values() for c in cs.values()])
    sets = []
    for path in (a.eval_data or a.data).split(","):
        arr, info = eval_bytes(path.strip(), "val", a.eval_bytes, a.window)
        sets.append(dict(name=Path(path.strip()).name or "data", arr=arr, bytes=len(arr), **info))
    set_threads(a.threads)
    out, runs = out_folder(a.out), out_folder(a.runs)
    plan = ScalePlan(data=a.data, batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr, warmup=a.warmup, seed=a.seed,
                     threads=a.threads, device=a.device, time_budget=a.time_budget,
                     eval_every=max(1, steps // a.curve_points), eval_windows=16, eval_batch=a.eval_batch,
                     audit_positions=a.audit_positions, window=a.window, budget=a.budget,
                     bpe_sample_bytes=a.bpe_sample_bytes, bpe_train_bytes=a.bpe_train_bytes, pilot=a.pilot)
    env = dict(start=environment(plan))

    def render(results: list[dict]):
        env["end"] = environment(plan)
        info = dict(command=command, steps=steps, train_bytes=steps * a.batch_size * a.seq_len, budget=a.budget,
                    batch_size=a.batch_size, seq_len=a.seq_len, window=a.window, env=env, taus=taus,
                    sets=[{k: v for k, v in s.items() if k != "arr"} for s in sets])
        (write_pilot if a.pilot else write_scale)(out, results, info)

    run(plan, grid, byte_configs, sets, taus, runs, steps, on_result=render, log=lambda line: print(line, flush=True))
    print(f"-> {out / ('pilot.md' if a.pilot else 'scale.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
