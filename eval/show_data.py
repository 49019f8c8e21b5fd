"""What `scratchpad show` measures on one text: per-byte aux entropy, patch ends, scratchpads and
the model's bits at a few τ from the parallel forward, with the FLOP/KV accounting against the
byte baseline and the lag profile of this text.

Positions follow the model's contract: position i has read bytes 0..i and predicts byte i + 1.
* entropy[i], ends[i], scratch[i] and offset[i] belong to position i: the aux entropy after
  reading byte i, whether byte i closes a patch, whether a scratchpad runs after byte i (its
  trunk output refreshes the context that predicts byte i + 1), and the bytes since the latest
  usable trunk output at i (0 = a commit or scratchpad at i itself).
* bits[i] is the cost of byte i itself, predicted at position i - 1 (NaN for byte 0, which
  nothing predicts).
A text longer than the model's context is cut into non-overlapping windows of max_seq_len bytes,
each read from an empty context (as `eval bpb` scores); the last position of a window still
predicts the first byte of the next, so every byte after the first has bits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from eval.lag_stats import bytes_since
from eval.scoring import LN2, Score, accounting, score
from scratchpad.accounting import byte_baseline, costs
from scratchpad.trigger import tau_json

RUN_TAUS = (math.inf, 3.0, 1.5, 0.0)   # τ whose bits every page carries (plus the chosen one)


@dataclass
class Run:
    """The model at one τ over the whole text: bits [n] float32 (NaN at byte 0), scratch [n]
    bool, and the windows' Score (events summed over windows, the byte baseline's keys)."""

    tau: float
    bits: np.ndarray
    scratch: np.ndarray
    score: Score

    @property
    def bpb(self) -> float:
        return float(np.nanmean(self.bits.astype(np.float64))) if len(self.bits) > 1 else math.nan


@dataclass
class TextView:
    """Everything the page shows. entropy [n] float32 nats, ends [n] bool, commit_offset [n]
    (bytes since the latest commit: the lag at τ = ∞), windows [(start, length)]."""

    data: bytes
    entropy: np.ndarray
    ends: np.ndarray
    commit_offset: np.ndarray
    windows: list
    runs: list
    every: int

    def run(self, tau: float) -> Run:
        return next(r for r in self.runs if r.tau == tau)


def windows(n: int, width: int) -> list[tuple[int, int]]:
    """(start, length) of the non-overlapping windows of at most `width` bytes covering n bytes."""
    return [(s, min(width, n - s)) for s in range(0, n, width)]


@torch.no_grad()
def view_text(model, data: bytes, taus, every: int = 0, on_window=None) -> TextView:
    """Run the parallel forward over data at every τ in taus (inf = no entropy trigger; every = the
    stride trigger, 0 = off). on_window(done, total) reports progress."""
    n = len(data)
    x_all = torch.tensor(list(data), dtype=torch.long)
    spans = windows(n, model.cfg.max_seq_len)
    entropy, ends = np.zeros(n, np.float32), np.zeros(n, bool)
    commit_offset = np.zeros(n, np.int64)
    runs, done = [], 0
    for tau in taus:
        bits, scratch, total = np.full(n, np.nan, np.float32), np.zeros(n, bool), Score()
        for s, L in spans:
            sc, out = score(model, x_all[s : s + L].unsqueeze(0), None, None if math.isinf(tau) else tau,
                            scratch_every=every or None)
            total.add(sc)
            m = min(L, n - 1 - s)  # positions whose next byte exists
            logp = F.log_softmax(out.logits[0, :m].float(), -1)
            target = x_all[s + 1 : s + 1 + m].to(logp.device)
            bits[s + 1 : s + 1 + m] = (-logp.gather(1, target[:, None])[:, 0] / LN2).cpu().numpy()
            scratch[s : s + L] = out.scratch[0].cpu().numpy()
            entropy[s : s + L] = out.entropy[0].float().cpu().numpy()
            ends[s : s + L] = out.ends[0].cpu().numpy()
            commit_offset[s : s + L] = bytes_since(out.ends)[0].cpu().numpy()
            done += 1
            if on_window:
                on_window(done, len(taus) * len(spans))
        runs.append(Run(tau=tau, bits=bits, scratch=scratch, score=total))
    return TextView(data=data, entropy=entropy, ends=ends, commit_offset=commit_offset, windows=spans, runs=runs,
                    every=every)


def lag_profile(view: TextView, run: Run) -> list[dict]:
    """BPB by offset since the latest commit: bits of byte i + 1 grouped by the offset at position
    i (the lag that byte would have at τ = ∞) -> [{offset, bpb, bytes}]."""
    off, bits = view.commit_offset[:-1], run.bits[1:].astype(np.float64)
    return [dict(offset=int(o), bpb=float(bits[off == o].mean()), bytes=int((off == o).sum()))
            for o in np.unique(off)]


def cost_numbers(cfg) -> dict:
    """The accounting the page's τ slider prices events with (scratchpad/accounting.py): MACs per
    part for the model and its byte baseline of equal trunk, and when each runs its aux stack."""
    base = byte_baseline(cfg)
    return dict(model=vars(costs(cfg)), baseline=vars(costs(base)),
                aux_always=cfg.aux_runs(False), aux_with_entropy=cfg.aux_runs(True),
                baseline_aux=base.aux_runs(False))


def run_summary(cfg, run: Run) -> dict:
    """One τ's row: BPB, scratchpads, counted events and the accounting against the byte baseline."""
    acc = accounting(cfg, run.score)
    return dict(tau=tau_json(run.tau), bpb=run.bpb, scratchpads=int(run.scratch.sum()),
                events=run.score.events.counts(), baseline_keys=run.score.baseline_keys,
                scratchpad_rate=acc["scratchpad_rate"], trunk_calls_per_byte=acc["trunk_calls_per_byte"],
                flops_per_byte=acc["flops_per_byte"], flops_ratio_vs_byte=acc["flops_ratio_vs_byte"],
                kv_bytes_per_byte=acc["kv_bytes_per_byte"], kv_ratio_vs_byte=acc["kv_ratio_vs_byte"])
