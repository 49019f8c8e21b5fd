"""The triggers experiment: the Scratchpad Patching paper's trigger ablation at matched rate. Which
bytes get a scratchpad: the aux head's entropy (H > τ, the model's rule) against data-blind rules
(stride, whitespace, random) and the stale prediction's entropy, each matched to the entropy
trigger's count in every window; plus the entropy and stride (every k-th byte) schedules at their
own rates, and how many bytes each entropy puts above each τ. See triggers_cli.py for the details
the report states."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from eval.loading import model_info
from eval.report import fmt
from eval.scoring import Score, accounting, entropy_quantile_thresholds, paired_difference, score
from eval.windows import WINDOWING, batches
from scratchpad.accounting import costs
from scratchpad.errors import UserError
from scratchpad.layers import entropy_nats
from scratchpad.patchers import spacelike

TRIGGERS = ("entropy", "stride", "whitespace", "random", "stale")
FIXED_TAUS = (1.5, 3.0)  # the taus the README and `bench generate` quote, always counted


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


@dataclass
class TriggersResult:
    """The plain row (no scratchpads), a row per (τ, trigger), the best trigger per τ, the schedules
    at their own rates and the share of bytes each entropy puts above each τ."""

    model: dict
    data: dict
    window: int
    taus: list[float]
    targets: list[float] | None
    plain: dict
    rows: list[dict]
    best: dict
    schedules: list[dict]
    entropy_above: list[dict]

    def json(self) -> dict:
        return dict(command="triggers", model=self.model, data=self.data, window=self.window,
                    method=WINDOWING.format(W=self.window), mode="rates" if self.targets else "thresholds",
                    plain=self.plain, rows=self.rows, best_trigger_per_threshold=self.best,
                    entropy_wins=sum(v == "entropy" for v in self.best.values()), settings=len(self.taus),
                    entropy_above=self.entropy_above, schedules=self.schedules)


def run(model, label: str, arr, data: dict, W: int, taus: list[float] | None = None, targets: list[float] | None = None,
        batch_size: int = 8, seed: int = 0, every: tuple[int, ...] = (), log=lambda line: None) -> TriggersResult:
    """The ablation over arr (uint8 [n]) at taus, or at the τ per target rate in targets."""
    cfg = model.cfg
    if not cfg.scratchpad:
        raise UserError(f"{label}: this model has no scratchpads (config scratchpad=false); the trigger ablation needs a scratchpad model")
    if targets is not None:
        taus = entropy_quantile_thresholds(model, arr, W, targets, batch_size)
    log(f"trigger ablation of {cfg.name} over {len(arr):,} bytes, taus {', '.join(fmt(t) for t in taus)}")
    plain, acc, above, schedules = run_triggers(model, arr, W, taus, batch_size, seed, tuple(every))
    p = dict(trigger="none", threshold=math.inf, target_rate=0.0, bpb=plain.bpb, **accounting(cfg, plain))
    rows = []
    for i, tau in enumerate(taus):
        for kind in TRIGGERS:
            ev = acc[(i, kind)]
            rows.append(dict(setting=i, trigger=kind, threshold=tau, target_rate=targets[i] if targets else None, bpb=ev.bpb,
                             aux_steps=ev.events.aux, **trigger_accounting(cfg, kind, ev)))
    for r in rows:
        log(f"tau {fmt(r['threshold']):>7} {r['trigger']:<10}: bpb {r['bpb']:.4f}, scratchpads "
            f"{100 * r['scratchpad_rate']:5.1f}%, {fmt(r['flops_per_byte'])} FLOPs/byte")
    best = {}
    for i, tau in enumerate(taus):
        group = [r for r in rows if r["setting"] == i]
        key = f"{fmt(tau)}" + (f" (rate {fmt(targets[i])})" if targets else "")
        best[key] = min(group, key=lambda r: r["bpb"])["trigger"]
    sched = []
    for (kind, setting), ev in schedules.items():
        d_se = paired_difference(ev.window_bpb, plain.window_bpb)[1]  # per-window pairs: the noise of the difference
        sched.append(dict(trigger=kind, setting=setting, bpb=ev.bpb, diff_vs_none=ev.bpb - plain.bpb, diff_vs_none_se=d_se,
                          **accounting(cfg, ev)))
    n = max(plain.events.bytes, 1)
    return TriggersResult(model=model_info(model, label), data=data, window=W, taus=taus, targets=targets, plain=p,
                          rows=rows, best=best, schedules=sched,
                          entropy_above=[dict(threshold=tau, aux_rate=c["aux"] / n, stale_rate=c["stale"] / n)
                                         for tau, c in above.items()])
