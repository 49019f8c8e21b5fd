"""The lag experiment: is a model in the regime where scratchpads pay? Per τ, the lag profile
(BPB by bytes since the latest commit and by bytes since the latest usable trunk output, with
least-squares slopes), the trunk's share (BPB without the trunk's context minus BPB at τ = ∞), the
aux head's own BPB, and the fraction of the τ = ∞ .. τ = 0 gap each τ closes."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch

from eval.experiments.bpb import run_bpb
from eval.loading import model_info
from eval.report import fmt
from eval.windows import WINDOWING


def without_trunk(model):
    """A copy of model whose decoder receives no trunk context (the `up` projection zeroed)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        m.up.weight.zero_()
    return m


def has_aux_head(cfg) -> bool:
    return cfg.n_aux_layers > 0 and cfg.aux_loss_weight > 0


def lag_figures(model, arr, window: int, rows: list[dict], batch_size: int) -> dict:
    """The figures every lag/sweep report shows, from rows that already carry a `lag` summary
    (see run_bpb(..., lag=True)): the trunk's share (one more pass without the trunk), the aux
    head's own BPB and the fraction of the τ = ∞ .. τ = 0 gap that each τ closes."""
    by_tau = {r["threshold"]: r for r in rows}
    plain = by_tau.get(math.inf)
    bpb_plain = plain["bpb"] if plain else run_bpb(model, arr, window, math.inf, batch_size)["bpb"]
    no_trunk = run_bpb(without_trunk(model), arr, window, math.inf, batch_size)["bpb"]
    dense = by_tau.get(0.0)
    gap = bpb_plain - dense["bpb"] if dense else None
    for r in rows:
        r["gap_closed"] = (bpb_plain - r["bpb"]) / gap if gap and abs(gap) > 1e-12 else None
    aux = rows[0]["lag"]["aux_bpb"] if has_aux_head(model.cfg) else None
    return dict(bpb_plain=bpb_plain, bpb_without_trunk=no_trunk, trunk_share=no_trunk - bpb_plain, aux_bpb=aux,
                gap_plain_minus_dense=gap)


@dataclass
class LagResult:
    """Rows per τ (run_bpb rows with a `lag` summary and `gap_closed`) and the figures of lag_figures."""

    model: dict
    data: dict
    window: int
    note: str | None
    rows: list[dict]
    figures: dict

    def json(self) -> dict:
        return dict(command="lag", model=self.model, data=self.data, window=self.window,
                    method=WINDOWING.format(W=self.window), note=self.note, rows=self.rows, **self.figures)


def run(model, label: str, arr, data: dict, window: int, taus: list[float], batch_size: int = 8,
        log=lambda line: None) -> LagResult:
    """The lag profile at every τ in taus (0 and inf added) over arr (uint8 [n]); a model without
    scratchpads at τ = ∞ only (the result's note says so)."""
    cfg = model.cfg
    note = None
    if not cfg.scratchpad:
        note = (f"{cfg.name} was trained without scratchpads (config scratchpad=false): τ has no effect, so the lag "
                "profile is reported at τ = ∞ only")
        taus = [math.inf]
    else:
        taus = sorted(set(taus) | {0.0, math.inf}, reverse=True)
    rows = []
    for tau in taus:
        r = run_bpb(model, arr, window, tau, batch_size, lag=True)
        rows.append(r)
        s = r["lag"]["offset_slope"]
        log(f"tau {fmt(tau):>5}: bpb {r['bpb']:.4f}, scratchpads {100 * r['scratchpad_rate']:5.1f}%, "
            f"slope by offset {fmt(s['slope'])} ± {fmt(s['se'])} bits/byte")
    figures = lag_figures(model, arr, window, rows, batch_size)
    log(f"trunk removed: bpb {figures['bpb_without_trunk']:.4f} (share {figures['trunk_share']:.4f}); aux head alone: "
        f"{fmt(figures['aux_bpb'])}")
    return LagResult(model=model_info(model, label), data=data, window=window, note=note, rows=rows, figures=figures)
