"""Scoring held-out windows with a parallel forward: nats per window, the events the forward ran
(scratchpad.accounting.Events), FLOPs and KV per byte against the byte-level baseline, and the
standard errors that say whether a BPB difference is more than noise."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from eval.windows import batches
from scratchpad.accounting import Events, per_byte, row_events
from scratchpad.rate import rate_thresholds

LN2 = math.log(2)


@dataclass
class Score:
    """Windows scored by parallel forwards: the events they ran, the byte-level baseline's attended
    keys on the same windows, and the nats and predicted bytes of each scored window (in order)."""

    events: Events = field(default_factory=Events)
    baseline_keys: int = 0
    windows: int = 0
    window_nats: list[float] = field(default_factory=list)
    window_bytes: list[int] = field(default_factory=list)

    def add(self, other: "Score") -> "Score":
        self.events.add(other.events)
        self.baseline_keys += other.baseline_keys
        self.windows += other.windows
        self.window_nats += other.window_nats
        self.window_bytes += other.window_bytes
        return self

    @property
    def nats(self) -> float:
        return float(sum(self.window_nats))

    @property
    def bpb(self) -> float:
        return self.nats / max(self.events.bytes, 1) / LN2

    @property
    def window_bpb(self) -> list[float]:
        return [n / max(b, 1) / LN2 for n, b in zip(self.window_nats, self.window_bytes)]

    @property
    def bpb_se(self) -> float | None:
        """Standard error of the BPB over windows (spread of the per-window BPB / sqrt(windows))."""
        return standard_error(self.window_bpb)


def standard_error(values) -> float | None:
    """Sample standard deviation / sqrt(n); None for fewer than two values."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else None


def paired_difference(a: list[float], b: list[float]) -> tuple[float, float | None]:
    """Mean per-window difference a - b over the same windows and its standard error: the noise
    that matters when two settings are scored on identical bytes (much smaller than either SE)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    return float(d.mean()), standard_error(d)


@torch.no_grad()
def score(model, x, y=None, threshold=None, scratchpad_mask=None, entropy_trigger: bool = True,
          scratch_every: int | None = None) -> tuple[Score, object]:
    """One parallel forward over x [B, L] scoring targets y [B, L] (None: events only);
    returns (Score, ModelOutput). With a scratchpad_mask, entropy_trigger says whether the mask
    came from the aux entropy (then inference runs the aux head) or from a data-blind rule;
    scratch_every = k adds the stride trigger (every k-th byte of a patch)."""
    B, L = x.shape
    device = next(model.parameters()).device  # the scorer follows the model (CPU batches moved there)
    x = x.to(device)
    y = y.to(device) if y is not None else None
    scratchpad_mask = scratchpad_mask.to(device) if scratchpad_mask is not None else None
    out = model(x, threshold=threshold, scratchpad_mask=scratchpad_mask, scratch_every=scratch_every)
    per_window = []
    if y is not None:
        nats = F.cross_entropy(out.logits.reshape(-1, 256).float(), y.reshape(-1), reduction="none").view(B, L)
        per_window = nats.double().sum(1).tolist()
    commits, scratch, keys = row_events(out.ends, out.scratch)
    if scratchpad_mask is not None:
        entropy_scratchpads = entropy_trigger
    else:
        entropy_scratchpads = threshold is not None and math.isfinite(float(threshold))
    aux = B * L if model.cfg.aux_runs(entropy_scratchpads) else 0
    events = Events(bytes=B * L, commits=int(commits.sum()), scratchpads=int(scratch.sum()), keys=int(keys.sum()), aux=aux)
    return Score(events=events, baseline_keys=B * L * (L + 1) // 2, windows=B, window_nats=per_window,
                 window_bytes=[L] * len(per_window)), out


def evaluate(model, arr: np.ndarray, window: int, threshold=None, batch_size: int = 8, on_output=None) -> Score:
    """The windows of arr (uint8 [n]) scored at one tau; on_output(ModelOutput, targets) sees each batch."""
    total = Score()
    tau = None if threshold is None or math.isinf(threshold) else threshold
    for x, y in batches(arr, window, batch_size):
        sc, out = score(model, x, y, threshold=tau)
        total.add(sc)
        if on_output is not None:
            on_output(out, y)
    return total


def entropy_quantile_thresholds(model, arr: np.ndarray, window: int, rates: list[float], batch_size: int = 8) -> list[float]:
    """tau per target scratchpad rate on the scored windows of arr (a rate is a fraction of all
    scored bytes: scratchpad.rate.rate_thresholds, the same function generate and serve use)."""
    return rate_thresholds(model, (x for x, _ in batches(arr, window, batch_size)), rates)


def accounting(cfg, sc: Score) -> dict:
    """FLOPs and KV per byte against the byte-level baseline on the same windows."""
    return per_byte(cfg, sc.events, sc.baseline_keys)
