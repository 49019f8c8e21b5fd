"""`scratchpad eval triggers`: the Scratchpad Patching paper's trigger ablation at matched rate.

    scratchpad eval triggers --model runs/default --data /work/data/text --rates 0.05,0.1,0.2,0.4 --out reports/triggers

Which bytes get a scratchpad: the aux head's entropy (H > tau, the model's own rule) against
data-blind alternatives given through `scratchpad_mask`, each matched to the entropy trigger's
count in every window:
  * stride      - the same number of scratchpads at evenly spaced bytes (among bytes that do not
                  close a patch, where a scratchpad may fire);
  * whitespace  - after whitespace/punctuation bytes (SpaceByte's rule: the next byte starts a word),
                  evenly thinned to the same count (all of them when there are fewer; the realised
                  rate is reported);
  * random      - the same number at uniformly random bytes (a control);
  * stale       - the same number at the bytes where the model's own prediction from the latest
                  committed patch (its tau = inf output) has the highest entropy: a trigger that
                  knows the stale trunk context the aux head lacks. At inference it costs a second
                  decoder pass at each scratchpad (counted in its FLOPs).
The taus come from `--rates` (target scratchpad rates, tau by entropy quantile) or `--thresholds`.
A second table compares schedules at their own rates: the entropy trigger at tau = 1.5 and 3 against
the stride trigger of the engine (`--scratch-every k`: every k-th byte of a patch) for each k of
`--every`, with each BPB's paired difference from no scratchpads.
Stride, whitespace and random triggers do not need the aux head at inference, so their FLOPs leave
it out (unless the patcher itself is entropy-based). The report also counts, at each tau, how many bytes
each entropy (aux head, stale prediction) puts above it: the trunk calls a trigger would spend at
that tau. Writes triggers.md, triggers.json, triggers.png.
"""
from __future__ import annotations

import math
import sys

from eval.cli_args import common_args, parse_counts, parse_rates, parse_thresholds
from eval.experiments.triggers import TRIGGERS, TriggersResult, run
from eval.loading import load_eval_model
from eval.report import fmt, out_folder, plot_xy, table, write_report
from eval.windows import WINDOWING, default_window, eval_bytes
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag

DEFAULT_RATES = "0.05,0.1,0.2,0.4"
DEFAULT_EVERY = "2,3,4,6,8"


def render(res: TriggersResult, out, label: str, cfg) -> str | None:
    """triggers.md, triggers.json and triggers.png into out; returns the picture's note."""
    p, rows, sched, best, data, W, taus = res.plain, res.rows, res.schedules, res.best, res.data, res.window, res.taus
    series = []
    for kind in TRIGGERS:
        rs = [r for r in rows if r["trigger"] == kind]
        series.append(dict(label=kind, x=[r["flops_per_byte"] for r in rs], y=[r["bpb"] for r in rs],
                           annotate=[f"{100 * r['scratchpad_rate']:.0f}%" for r in rs]))
    for kind, label in (("entropy", "entropy τ (own rate)"), ("every", "every k-th byte (own rate)")):
        rs = [r for r in res.schedules if r["trigger"] == kind]
        if rs:
            series.append(dict(label=label, x=[r["flops_per_byte"] for r in rs], y=[r["bpb"] for r in rs],
                               annotate=[f"{'τ=' if kind == 'entropy' else 'k='}{fmt(r['setting'], 3)}" for r in rs]))
    note = plot_xy(out / "triggers.png", series, "FLOPs per byte", "bits per byte",
                   f"Scratchpad triggers: BPB vs FLOPs per byte, {cfg.name}",
                   points=[dict(label="no scratchpads (τ=∞)", x=p["flops_per_byte"], y=p["bpb"])])
    head = ["τ", "target rate", "trigger", "scratchpad rate", "BPB", "Δ BPB vs none", "FLOPs / byte", "FLOPs × byte",
            "trunk calls / byte"]
    body = [[math.inf, 0.0, "none", p["scratchpad_rate"], p["bpb"], 0.0, p["flops_per_byte"], p["flops_ratio_vs_byte"],
             p["trunk_calls_per_byte"]]]
    body += [[r["threshold"], r["target_rate"], r["trigger"], r["scratchpad_rate"], r["bpb"], r["bpb"] - p["bpb"],
              r["flops_per_byte"], r["flops_ratio_vs_byte"], r["trunk_calls_per_byte"]] for r in rows]
    sections = [
        f"Model: `{label}` ({cfg.name}, patcher {cfg.patcher}, P={cfg.patch_size}). Data: `{data['path']}`, "
        f"{data['bytes_used']:,} bytes. Method: {WINDOWING.format(W=W)}.",
        "Triggers: **entropy** = H > τ (the model's rule); **stride** = the same count per window at evenly spaced bytes "
        "that do not close a patch; **whitespace** = after whitespace/punctuation bytes (SpaceByte's rule), thinned evenly "
        "to the same count (fewer when a window has fewer such bytes); **random** = the same count at random bytes; "
        "**stale** = the same count at the bytes where the model's own τ = ∞ prediction (from the latest committed "
        "patch) has the highest entropy, which costs a second decoder pass at each scratchpad (counted). "
        "Stride/whitespace/random/stale need no aux head at inference, so their FLOPs omit it"
        + (" (this model's entropy patcher needs it anyway)." if cfg.patcher.startswith("entropy") else "."),
        table(head, body),
        "Lowest BPB per τ: " + ", ".join(f"τ={k}: {v}" for k, v in best.items())
        + f" (entropy best at {sum(v == 'entropy' for v in best.values())} of {len(taus)}).",
        "Fraction of all bytes (not closing a patch) whose entropy exceeds τ: the scratchpads, hence the trunk calls "
        "beyond the commits, that an entropy trigger fires at τ. **aux** is the model's rule; **stale** thresholds "
        "the τ = ∞ prediction's entropy instead.",
        table(["τ", "aux H > τ", "stale H > τ"], [[e["threshold"], e["aux_rate"], e["stale_rate"]] for e in res.entropy_above]),
        "## Schedules at their own rates\n\nThe entropy trigger at fixed τ against the stride trigger the engine runs "
        "(`--scratch-every k`: a scratchpad at every k-th byte of a patch, τ = ∞), each at the rate it fires. "
        "Δ BPB is the difference from no scratchpads on the same windows; ± is the standard error of the per-window "
        "paired differences.",
        table(["trigger", "τ or k", "scratchpad rate", "BPB", "Δ BPB vs none", "± SE", "FLOPs / byte", "FLOPs × byte",
               "trunk calls / byte"],
              [["entropy τ" if r["trigger"] == "entropy" else "every k-th byte", r["setting"], r["scratchpad_rate"],
                r["bpb"], r["diff_vs_none"], r["diff_vs_none_se"], r["flops_per_byte"], r["flops_ratio_vs_byte"],
                r["trunk_calls_per_byte"]] for r in sched]),
    ]
    write_report(out, "triggers", "Scratchpad trigger ablation", sections, res.json(), png_note=note, png=True)
    return note


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval triggers", description=describe(__doc__))
    common_args(ap, max_bytes=1 << 16)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--rates", help=f"target scratchpad rates; tau by entropy quantile (default {DEFAULT_RATES})")
    g.add_argument("--thresholds", help="entropy thresholds in nats instead of rates")
    ap.add_argument("--seed", type=int_flag("--seed", 0), default=0, help="seed of the random trigger")
    ap.add_argument("--every", default=DEFAULT_EVERY, metavar="K,K",
                    help=f"strides k of the schedule table: a scratchpad at every k-th byte of a patch (default {DEFAULT_EVERY})")
    a = ap.parse_args(sys.argv[1:] if argv is None else argv)
    every = parse_counts(a.every, "--every")
    if a.thresholds:
        taus, targets = parse_thresholds(a.thresholds), None
        if any(math.isinf(t) for t in taus):
            raise UserError("--thresholds: inf means no scratchpads (always reported as the plain row); give finite taus")
    else:
        taus, targets = None, parse_rates(a.rates or DEFAULT_RATES)
        if 0 in targets:
            raise UserError("--rates: 0 means no scratchpads (always reported as the plain row); give rates > 0")
    out = out_folder(a.out)
    model, label = load_eval_model(a.model, a.threads)
    W = default_window(model.cfg, a.window)
    arr, data = eval_bytes(a.data, a.split, a.max_bytes, W)
    res = run(model, label, arr, data, W, taus, targets, a.batch_size, a.seed, tuple(every),
              log=lambda line: print(line, flush=True))
    note = render(res, out, label, model.cfg)
    print(f"-> {out / 'triggers.md'}" + (f" ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
