"""Next-byte sampling: greedy, temperature, top-k, top-p, reproducible with a seed.

Each batch row has its own random stream (seeded from seed and the row index), so a row's sample
never depends on its neighbours."""
from __future__ import annotations

import math

import torch

from scratchpad.errors import UserError

# The one default of `Engine.generate`, `Sampler` and `scratchpad generate --temperature`: greedy,
# so the library and the CLI give the same, reproducible bytes unless asked to sample.
DEFAULT_TEMPERATURE = 0.0


class Sampler:
    def __init__(self, rows: int, temperature: float = DEFAULT_TEMPERATURE, top_k: int = 0, top_p: float = 1.0,
                 seed: int | None = None):
        if not (temperature >= 0 and math.isfinite(temperature)):
            raise UserError(f"temperature must be a finite number >= 0, got {temperature}")
        if top_k < 0 or top_k > 256:
            raise UserError(f"top-k must be in 0..256 (0 = off), got {top_k}")
        if not 0 < top_p <= 1:
            raise UserError(f"top-p must be in (0, 1], got {top_p}")
        self.temperature, self.top_k, self.top_p = temperature, top_k, top_p
        base = (seed if seed is not None else torch.seed()) % 2**40
        self.gens = [torch.Generator().manual_seed(base * 1_000_003 + row) for row in range(rows)]

    def __call__(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """logits [R, 256] of batch rows `rows` -> bytes [R] long (on CPU)."""
        logits = logits.detach().float().cpu()
        if self.temperature == 0:
            return logits.argmax(-1)
        logits = logits / self.temperature
        if self.top_k:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1:
            sorted_logits, order = logits.sort(-1, descending=True)
            probs = sorted_logits.softmax(-1)
            drop = probs.cumsum(-1) - probs > self.top_p  # keep the smallest prefix reaching top_p
            logits = logits.scatter(-1, order, sorted_logits.masked_fill(drop, float("-inf")))
        probs = logits.softmax(-1)
        return torch.cat([torch.multinomial(probs[i], 1, generator=self.gens[r]) for i, r in enumerate(rows)])
