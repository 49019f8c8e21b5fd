"""Causality audit: changing byte k must leave every logit at positions t < k unchanged.

Runs in float64 with several thresholds (no scratchpads, low and mid tau, tau = 0), the stride
trigger (alone and with a tau) and an explicit random scratchpad mask; a variant FAILs with the
first position whose logits moved.
The command is eval/causality_cli.py (`scratchpad eval causality`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


FIXED_THRESHOLDS = (None, 0.0, 1.5)


@dataclass
class AuditResult:
    name: str
    passed: bool
    first_leak: int | None  # earliest position t < k whose logits moved
    checks: int
    max_diff: float

    def line(self) -> str:
        verdict = "PASS" if self.passed else f"FAIL (first leaking position {self.first_leak}, max diff {self.max_diff:.3g})"
        return f"{self.name:<34} {verdict}  [{self.checks} perturbations]"


def audit_bytes(length: int, gen: torch.Generator) -> torch.Tensor:
    """Text-like random bytes: letters with spaces and punctuation so variable patchers vary."""
    alphabet = torch.tensor(list(b"etaoinshrdlu  .,\nETAOIN0123") + [0xC3, 0xA9, 0x00, 0xFF])
    return alphabet[torch.randint(len(alphabet), (2, length), generator=gen)]


def calibrate_entropy_patcher(model, x) -> None:
    """Random weights give near-uniform entropy, so a fixed boundary threshold would close a patch
    at every byte and hide leaks: move it to the median of this input's entropy (or its increase)."""
    if model.cfg.patcher.startswith("entropy"):
        ent = model(x).entropy
        if model.cfg.patcher == "entropy-monotonic":
            ent = ent[:, 1:] - ent[:, :-1]
        model.patcher.threshold = float(ent.median())


@torch.no_grad()
def audit_model(model, name: str = "model", length: int = 48, positions: int = 6, seed: int = 0,
                tol: float = 1e-10) -> AuditResult:
    """Perturb bytes at `positions` random k (plus 0 and the last) under every threshold setting."""
    model = model.double().eval()
    gen = torch.Generator().manual_seed(seed)
    length = min(length, model.cfg.max_seq_len)
    x = audit_bytes(length, gen)
    ks = sorted({0, length - 1, *torch.randint(1, length - 1, (positions,), generator=gen).tolist()})
    # thresholds at quantiles of this model's own entropy, so scratchpads fire on some bytes only
    quantiles = model(x).entropy.flatten().quantile(torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    settings = [dict(threshold=t) for t in (*FIXED_THRESHOLDS, *quantiles.tolist())]
    settings.append(dict(scratchpad_mask=torch.rand(x.shape, generator=gen) < 0.5))
    settings += [dict(scratch_every=3), dict(threshold=quantiles[1].item(), scratch_every=2)]  # the stride trigger
    first, worst, checks = None, 0.0, 0
    for kwargs in settings:
        base = model(x, **kwargs).logits
        for k in ks:
            x2 = x.clone()
            x2[:, k] = (x2[:, k] + torch.randint(1, 256, (2,), generator=gen)) % 256
            moved = (model(x2, **kwargs).logits[:, :k] - base[:, :k]).abs().amax(dim=(0, 2))
            checks += 1
            bad = (moved > tol).nonzero()
            if len(bad):
                t = int(bad[0])
                first = t if first is None else min(first, t)
                worst = max(worst, float(moved.max()))
    return AuditResult(name, first is None, first, checks, worst)
