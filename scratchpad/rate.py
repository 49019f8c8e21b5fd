"""The one meaning of a target scratchpad rate (`--rate`, `--rates`, the server's
`scratchpad_budget`) and the entropy threshold tau that realises it. Every command that turns a
rate into tau (generate, serve, eval bpb / sweep / triggers) calls `rate_thresholds`.

It sits in the library package because that is the lowest place both infer and eval may import.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import torch


@torch.no_grad()
def rate_thresholds(model, inputs: Iterable[torch.Tensor], rates: list[float]) -> list[float]:
    """tau per target rate R, where R is a fraction of ALL the bytes in `inputs` (an iterable of
    x [B, L] long byte tensors), the same fraction every report prints as "scratchpad rate".

    A scratchpad never fires at a byte that closes a patch (the commit serves it), so tau is the
    quantile of the aux entropy over the non-closing bytes that leaves R * (all bytes) of them
    above it. R = 0 (or no non-closing byte) -> inf; R at or above the non-closing fraction -> 0."""
    device = next(model.parameters()).device
    entropies, total = [], 0
    for x in inputs:
        out = model(x.to(device))
        entropies.append(out.entropy[~out.ends].double().cpu().numpy())
        total += x.numel()
    e = np.concatenate(entropies) if entropies else np.zeros(0)
    taus = []
    for r in rates:
        share = r * total / max(e.size, 1)  # the fraction of the non-closing bytes that must fire
        if r == 0 or e.size == 0:
            taus.append(math.inf)
        elif share >= 1:
            taus.append(0.0)
        else:
            taus.append(max(0.0, float(np.quantile(e, 1 - share))))
    return taus
