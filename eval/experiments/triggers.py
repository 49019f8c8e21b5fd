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

import numpy as np
import torch

from eval.cli_args import common_args, parse_counts, parse_rates, parse_thresholds
from eval.loading import load_eval_model, model_info
from eval.report import fmt, out_folder, plot_xy, table, write_report
from eval.scoring import Score, accounting, entropy_quantile_thresholds, paired_difference, score
from eval.windows import WINDOWING, batches, default_window, eval_bytes
from scratchpad.accounting import costs
from scratchpad.errors import UserError, run_cli
from scratchpad.flags import Parser, describe, int_flag
from scratchpad.layers import entropy_nats
from scratchpad.patchers import spacelike

TRIGGERS = ("entropy", "stride", "whitespace", "random", "stale")
DEFAULT_RATES = "0.05,0.1,0.2,0.4"
FIXED_TAUS = (1.5, 3.0)  # the taus the README and `bench generate` quote, always counted
DEFAULT_EVERY = "2,3,4,6,8"


def evenly(cands: torch.Tensor, k: int) -> torch.Tensor:
    """k of the sorted candidate positions, evenly spread (all when k >= len)."""
    n = len(cands)
    if k >= n:
        return cands
    if k <= 0:
        return cands[:0]
    idx = ((torch.arange(k, dtype=torch.float64) + 0.5) * n / k).floor().long().clamp(max=n - 1)
    return cands[idx]


def matched_masks(x: torch.Tensor, ends: torch.Tensor, ent_mask: torch.Tensor, gen: torch.Generator,
                  stale_entropy: torch.Tensor) -> dict:
    """Per trigger kind a [B, L] mask with (up to) the entropy mask's per-row count; stale_entropy
    [B, L] ranks the bytes for the stale trigger."""
    B, L = x.shape
    space = spacelike(x) & ~ends
    masks = {"entropy": ent_mask}
    for kind in ("stride", "whitespace", "random", "stale"):
        m = torch.zeros_like(ent_mask)
        for b in range(B):
            k = int(ent_mask[b].sum())
            free = (~ends[b]).nonzero().flatten()
            if kind == "stride":
                pos = evenly(free, k)
            elif kind == "whitespace":
                pos = evenly(space[b].nonzero().flatten(), k)
            elif kind == "random":
                pos = free[torch.randperm(len(free), generator=gen)[:k]]
            else:
                pos = free[stale_entropy[b, free].argsort(descending=True, stable=True)[:k]]
            m[b, pos] = True
        masks[kind] = m
    return masks


def run_triggers(model, arr: np.ndarray, W: int, taus: list[float], batch_size: int, seed: int = 0,
                 every: tuple[int, ...] = ()):
    """-> (plain Score, {(tau index, kind): Score}, {tau: {"aux"|"stale": bytes}},
    {("entropy", tau) | ("every", k): Score}): the third counts the bytes that do not close a patch
    whose aux or stale entropy exceeds each tau; the last holds the schedules at their own
    rates (entropy at FIXED_TAUS, stride k for each k in `every`)."""
    plain, acc, schedules = Score(), {}, {}
    above = {tau: dict(aux=0, stale=0) for tau in sorted(set(taus) | set(FIXED_TAUS))}
    gen = torch.Generator().manual_seed(seed)
    for x, y in batches(arr, W, batch_size):
        ev, out = score(model, x, y, None)
        plain.add(ev)
        stale = entropy_nats(out.logits.float())
        free = ~out.ends
        for tau, n in above.items():
            n["aux"] += int(((out.entropy > tau) & free).sum())
            n["stale"] += int(((stale > tau) & free).sum())
        for key in [("entropy", t) for t in FIXED_TAUS] + [("every", k) for k in every]:
            kw = dict(threshold=key[1]) if key[0] == "entropy" else dict(scratch_every=key[1])
            schedules.setdefault(key, Score()).add(score(model, x, y, **kw)[0])
        for i, tau in enumerate(taus):
            ent_mask = (out.entropy > tau) & free
            for kind, mask in matched_masks(x, out.ends, ent_mask, gen, stale).items():
                e, _ = score(model, x, y, scratchpad_mask=mask, entropy_trigger=kind == "entropy")
                acc.setdefault((i, kind), Score()).add(e)
    return plain, acc, above, schedules


def trigger_accounting(cfg, kind: str, ev: Score) -> dict:
    """FLOPs and KV per byte of one trigger's events; the stale trigger pays a second decoder pass at
    each scratchpad (the first pass, from the stale context, decides whether to fire)."""
    acc = accounting(cfg, ev)
    if kind == "stale":
        extra = 2 * costs(cfg).decoder_byte * ev.events.scratchpads / max(ev.events.bytes, 1)
        acc["flops_per_byte"] += extra
        acc["flops_per_byte_split"]["decoder"] += extra
        acc["flops_ratio_vs_byte"] = acc["flops_per_byte"] / acc["byte_baseline_flops_per_byte"]
    return acc


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
        targets = parse_rates(a.rates or DEFAULT_RATES)
        if 0 in targets:
            raise UserError("--rates: 0 means no scratchpads (always reported as the plain row); give rates > 0")
    out = out_folder(a.out)
    model, label = load_eval_model(a.model, a.threads)
    if not model.cfg.scratchpad:
        raise UserError(f"{label}: this model has no scratchpads (config scratchpad=false); the trigger ablation needs a scratchpad model")
    W = default_window(model.cfg, a.window)
    arr, data = eval_bytes(a.data, a.split, a.max_bytes, W)
    if targets is not None:
        taus = entropy_quantile_thresholds(model, arr, W, targets, a.batch_size)
    print(f"trigger ablation of {model.cfg.name} over {len(arr):,} bytes, taus {', '.join(fmt(t) for t in taus)}", flush=True)
    plain, acc, above, schedules = run_triggers(model, arr, W, taus, a.batch_size, a.seed, tuple(every))

    cfg = model.cfg
    p = dict(trigger="none", threshold=math.inf, target_rate=0.0, bpb=plain.bpb, **accounting(cfg, plain))
    rows = []
    for i, tau in enumerate(taus):
        for kind in TRIGGERS:
            ev = acc[(i, kind)]
            rows.append(dict(setting=i, trigger=kind, threshold=tau, target_rate=targets[i] if targets else None, bpb=ev.bpb,
                             aux_steps=ev.events.aux, **trigger_accounting(cfg, kind, ev)))
    for r in rows:
        print(f"tau {fmt(r['threshold']):>7} {r['trigger']:<10}: bpb {r['bpb']:.4f}, scratchpads {100 * r['scratchpad_rate']:5.1f}%, "
              f"{fmt(r['flops_per_byte'])} FLOPs/byte")
    # per tau: which trigger has the lowest BPB
    best = {}
    for i, tau in enumerate(taus):
        group = [r for r in rows if r["setting"] == i]
        key = f"{fmt(tau)}" + (f" (rate {fmt(targets[i])})" if targets else "")
        best[key] = min(group, key=lambda r: r["bpb"])["trigger"]
    result = dict(command="triggers", model=model_info(model, label), data=data, window=W, method=WINDOWING.format(W=W),
                  mode="rates" if targets else "thresholds", plain=p, rows=rows, best_trigger_per_threshold=best,
                  entropy_wins=sum(v == "entropy" for v in best.values()), settings=len(taus),
                  entropy_above=[dict(threshold=tau, aux_rate=n["aux"] / max(plain.events.bytes, 1),
                                      stale_rate=n["stale"] / max(plain.events.bytes, 1)) for tau, n in above.items()])
    result["schedules"] = sched = []
    for (kind, setting), ev in schedules.items():
        d_se = paired_difference(ev.window_bpb, plain.window_bpb)[1]  # per-window pairs: the noise of the difference
        sched.append(dict(trigger=kind, setting=setting, bpb=ev.bpb, diff_vs_none=ev.bpb - plain.bpb, diff_vs_none_se=d_se,
                          **accounting(cfg, ev)))
    series = []
    for kind in TRIGGERS:
        rs = [r for r in rows if r["trigger"] == kind]
        series.append(dict(label=kind, x=[r["flops_per_byte"] for r in rs], y=[r["bpb"] for r in rs],
                           annotate=[f"{100 * r['scratchpad_rate']:.0f}%" for r in rs]))
    for kind, label in (("entropy", "entropy τ (own rate)"), ("every", "every k-th byte (own rate)")):
        rs = [r for r in result["schedules"] if r["trigger"] == kind]
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
        + f" (entropy best at {result['entropy_wins']} of {len(taus)}).",
        "Fraction of all bytes (not closing a patch) whose entropy exceeds τ: the scratchpads, hence the trunk calls "
        "beyond the commits, that an entropy trigger fires at τ. **aux** is the model's rule; **stale** thresholds "
        "the τ = ∞ prediction's entropy instead.",
        table(["τ", "aux H > τ", "stale H > τ"], [[e["threshold"], e["aux_rate"], e["stale_rate"]] for e in result["entropy_above"]]),
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
    write_report(out, "triggers", "Scratchpad trigger ablation", sections, result, png_note=note, png=True)
    print(f"-> {out / 'triggers.md'}" + (f" ({note})" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
