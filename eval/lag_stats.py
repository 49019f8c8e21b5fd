"""What one scoring pass can collect about patch lag: per-byte bits by offset since the latest
committed patch and by realised lag, and the aux head's own cross-entropy (`LagStats`, passed as
`on_output` to eval/scoring.py `evaluate`). The `eval lag` report built on it is eval/experiments/lag.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from eval.scoring import LN2

MAX_BUCKET = 64  # offsets / lags >= this share the last bucket


def bytes_since(mask: torch.Tensor) -> torch.Tensor:
    """mask [B, T] bool (positions whose trunk output is usable from there on) -> [B, T] long:
    t - (latest marked position <= t), or t + 1 before the first (the learned start vector)."""
    t = torch.arange(mask.shape[1], device=mask.device)
    latest = torch.where(mask, t, torch.full_like(t, -1)).cummax(1).values
    return t - latest


@dataclass
class Profile:
    """Per-byte cross-entropy accumulated by bucket: sums of nats and nats^2 and counts [MAX_BUCKET]."""

    nats: np.ndarray = field(default_factory=lambda: np.zeros(MAX_BUCKET))
    sq: np.ndarray = field(default_factory=lambda: np.zeros(MAX_BUCKET))
    count: np.ndarray = field(default_factory=lambda: np.zeros(MAX_BUCKET, dtype=np.int64))
    moments: np.ndarray = field(default_factory=lambda: np.zeros(6))  # n, Σo, Σo², Σy, Σy², Σoy

    def add(self, bucket: torch.Tensor, nats: torch.Tensor):
        o = bucket.reshape(-1).clamp(max=MAX_BUCKET - 1).cpu().numpy()
        y = nats.reshape(-1).double().cpu().numpy()
        self.nats += np.bincount(o, y, MAX_BUCKET)
        self.sq += np.bincount(o, y * y, MAX_BUCKET)
        self.count += np.bincount(o, minlength=MAX_BUCKET)
        of = o.astype(np.float64)
        self.moments += [len(y), of.sum(), (of * of).sum(), y.sum(), (y * y).sum(), (of * y).sum()]

    def rows(self) -> list[dict]:
        """[{bucket, bytes, bpb, se}] for the non-empty buckets (se: standard error of the mean)."""
        out = []
        for b in np.nonzero(self.count)[0]:
            n = int(self.count[b])
            mean = self.nats[b] / n
            var = max(self.sq[b] / n - mean * mean, 0.0)
            out.append(dict(bucket=int(b), bytes=n, bpb=mean / LN2, se=math.sqrt(var / n) / LN2 if n > 1 else None))
        return out

    def slope(self) -> dict:
        """Least-squares slope of per-byte bits on the bucket value, with its standard error."""
        n, so, soo, sy, syy, soy = self.moments
        if n < 3:
            return dict(slope=None, se=None)
        vo = soo / n - (so / n) ** 2
        if vo <= 0:
            return dict(slope=None, se=None)
        b = (soy / n - so / n * sy / n) / vo
        resid = max(syy / n - (sy / n) ** 2 - b * b * vo, 0.0)
        return dict(slope=b / LN2, se=math.sqrt(resid / (n - 2) / vo) / LN2)


@dataclass
class LagStats:
    """What one pass over the windows at one τ collects: BPB by offset since the latest commit and by
    realised lag, and the aux head's cross-entropy."""

    offset: Profile = field(default_factory=Profile)
    lag: Profile = field(default_factory=Profile)
    aux_nats: float = 0.0
    bytes: int = 0

    def __call__(self, out, y):
        """Accumulate one scored batch: a ModelOutput and its targets y [B, L]."""
        y = y.to(out.logits.device)
        nats = F.cross_entropy(out.logits.transpose(1, 2).float(), y, reduction="none")
        self.offset.add(bytes_since(out.ends), nats)
        self.lag.add(bytes_since(out.ends | out.scratch), nats)
        self.aux_nats += float(F.cross_entropy(out.aux_logits.reshape(-1, 256).float(), y.reshape(-1), reduction="sum"))
        self.bytes += y.numel()

    def summary(self) -> dict:
        return dict(by_offset=self.offset.rows(), by_lag=self.lag.rows(), offset_slope=self.offset.slope(),
                    lag_slope=self.lag.slope(), aux_bpb=self.aux_nats / max(self.bytes, 1) / LN2)
