"""Causality audit: changing byte k must leave every logit at positions t < k unchanged.

Runs in float64 with several thresholds (no scratchpads, low and mid tau, tau = 0), the stride
trigger (alone and with a tau) and an explicit random scratchpad mask; a variant FAILs with the
first position whose logits moved.
`scratchpad eval causality [--preset NAME ... | --all-presets | --model PATH]`.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass

import torch

from scratchpad import ModelConfig, build_model, load_model
from scratchpad.errors import run_cli
from scratchpad.flags import Parser, describe, int_flag

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


def main(argv=None) -> int:
    ap = Parser(prog="scratchpad eval causality", description=describe(__doc__))
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", action="append", help="preset name (repeatable)")
    src.add_argument("--all-presets", action="store_true", help="every preset (tiny forms, plus full size with --full)")
    src.add_argument("--model", help="model folder or training --out folder (its best/, else last/)")
    ap.add_argument("--full", action="store_true", help="with --all-presets: also the full-size presets (slow)")
    ap.add_argument("--length", type=int_flag("--length", 3), default=48, help="bytes per audit sequence")
    ap.add_argument("--positions", type=int_flag("--positions"), default=6, help="random perturbed positions per setting")
    ap.add_argument("--seed", type=int_flag("--seed", 0), default=0, help="seed of the perturbed positions and bytes")
    ap.add_argument("--json", action="store_true", help="print one JSON line with all results")
    args = ap.parse_args(argv)

    if args.model:
        targets = [(args.model, lambda: load_model(args.model))]
    else:
        names = args.preset or [n for n in ModelConfig.presets() if args.all_presets and (args.full or n.startswith("tiny-"))]
        if not names:
            names = [n for n in ModelConfig.presets() if n.startswith("tiny-")]
        for n in names:
            ModelConfig.preset(n)  # unknown names fail before any work
        targets = [(n, lambda n=n: build_model(ModelConfig.preset(n))) for n in names]

    results = []
    for name, make in targets:
        torch.manual_seed(args.seed)
        model = make().double()
        if not args.model:
            calibrate_entropy_patcher(model, audit_bytes(args.length, torch.Generator().manual_seed(args.seed)))
        r = audit_model(model, name, args.length, args.positions, args.seed)
        print(r.line(), flush=True)
        results.append(r)
    if args.json:
        print(json.dumps({"results": [r.__dict__ for r in results], "all_passed": all(r.passed for r in results)}))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(run_cli(main))
