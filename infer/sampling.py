"""Next-byte sampling on the device, with settings per slot: greedy (temperature 0), temperature,
top-k, top-p, reproducible with a seed.

Randomness is counter-based: the Gumbel noise of slot s at its n-th sampled byte is a hash of
(seed_s, n, byte value), so a sequence's samples depend only on its own seed and position, never
on its neighbours or on which slot serves it, and no generator state lives on the host."""
from __future__ import annotations

import math

import torch

from scratchpad.errors import UserError

# The one default of `Engine.generate`, `Request` and `scratchpad generate --temperature`: greedy,
# so the library and the CLI give the same, reproducible bytes unless asked to sample.
DEFAULT_TEMPERATURE = 0.0

_M1, _M2, _GOLD = -4658895280553007687, -7723592293110705685, -7046029254386353131  # splitmix64 (signed)


def check_sampling(temperature: float, top_k: int, top_p: float):
    if not (temperature >= 0 and math.isfinite(temperature)):
        raise UserError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k < 0 or top_k > 256:
        raise UserError(f"top-k must be in 0..256 (0 = off), got {top_k}")
    if not 0 < top_p <= 1:
        raise UserError(f"top-p must be in (0, 1], got {top_p}")


def _shr(x, s: int):
    """Logical right shift of int64 values."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def uniform(seed: torch.Tensor, counter: torch.Tensor, n: int = 256) -> torch.Tensor:
    """Uniform (0, 1) float64 [B, n] from a splitmix64 hash of (seed [B], counter [B], column)."""
    x = seed.unsqueeze(1) * _GOLD + counter.unsqueeze(1) * _M2 + torch.arange(1, n + 1, device=seed.device) * _M1
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    x = x ^ _shr(x, 31)
    return (_shr(x, 11).double() + 0.5) / float(1 << 53)


class SlotSampler:
    def __init__(self, slots: int, device):
        z = torch.zeros(slots, device=device)
        self.temperature, self.top_p = z.clone(), z + 1.0
        self.top_k = z.long()
        self.seed, self.counter = z.long(), z.long()
        self.random = [False] * slots  # host copy: does the slot sample (temperature > 0)?

    def configure(self, slot: int, temperature=0.0, top_k=0, top_p=1.0, seed=None, counter=0):
        check_sampling(temperature, top_k, top_p)
        self.temperature[slot], self.top_k[slot], self.top_p[slot] = temperature, top_k, top_p
        self.seed[slot] = (seed if seed is not None else int(torch.randint(0, 2**62, ()))) % 2**62
        self.counter[slot] = counter
        self.random[slot] = temperature > 0

    def __call__(self, logits: torch.Tensor, active: torch.Tensor, any_random: bool) -> torch.Tensor:
        """logits [B, 256] -> bytes [B] long; counters of active slots advance."""
        greedy = logits.argmax(-1)
        if not any_random:
            return greedy
        t = self.temperature.unsqueeze(1)
        s = logits.float() / t.clamp(min=1e-6)
        srt, _ = s.sort(-1, descending=True)
        rank = torch.arange(256, device=logits.device)
        k = torch.where(self.top_k > 0, self.top_k, torch.full_like(self.top_k, 256)).unsqueeze(1)
        srt = srt.masked_fill(rank >= k, float("-inf"))
        p = srt.softmax(-1)
        keep = (p.cumsum(-1) - p <= self.top_p.unsqueeze(1)) & (rank < k)  # smallest prefix reaching top_p
        floor = srt.masked_fill(~keep, float("inf")).amin(-1, keepdim=True)
        s = s.masked_fill(s < floor, float("-inf"))
        gumbel = -torch.log(-torch.log(uniform(self.seed, self.counter))).to(s.dtype)
        sampled = (s + gumbel).argmax(-1)
        self.counter += active.long()
        return torch.where(self.temperature > 0, sampled, greedy)
