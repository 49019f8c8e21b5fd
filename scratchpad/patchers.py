"""Patch boundaries. `ends[b, t]` is True when byte t closes a patch; it depends on bytes <= t only.

Every patcher has a parallel `forward` (training, prefill) and a per-byte `step` (decode) that
agree exactly, and every variable patcher is bounded by `max_len` bytes per patch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Boundaries:
    ends: torch.Tensor                    # [B, T] bool
    prob: torch.Tensor | None = None      # [B, T] router boundary probability (straight-through)
    coord: torch.Tensor | None = None     # [B, T] soft patcher coordinate (patch index + fraction)
    aux_loss: torch.Tensor | None = None  # router compression loss
    z: torch.Tensor | None = None         # [B, T] float64 soft: running sum of probabilities
    forced: torch.Tensor | None = None    # [B, T] bool soft: ends forced by the length bound


@dataclass
class PatcherState:
    """Per-row decode state: bytes in the open patch, and what the rule needs of the last byte."""

    length: torch.Tensor        # [B] long
    last_entropy: torch.Tensor  # [B]
    last_byte: torch.Tensor     # [B] long (-1 before the first byte)
    last_hidden: torch.Tensor   # [B, d] (router)
    coord: torch.Tensor         # [B] float64 (soft: running sum of boundary probabilities)
    forced: torch.Tensor        # [B] long (soft: forced ends so far)

    def reset(self, slot: int):
        for t in self.tensors():
            t[slot] = 0
        self.last_byte[slot] = -1

    def tensors(self) -> list[torch.Tensor]:
        return list(vars(self).values())


def spacelike(x: torch.Tensor) -> torch.Tensor:
    """SpaceByte's rule: not an ASCII letter, digit, or UTF-8 continuation byte."""
    letter = ((x >= 65) & (x <= 90)) | ((x >= 97) & (x <= 122))
    digit = (x >= 48) & (x <= 57)
    cont = (x >= 0x80) & (x <= 0xBF)
    return ~(letter | digit | cont)


def bound_length(natural: torch.Tensor, max_len: int) -> torch.Tensor:
    """Add forced ends so no patch exceeds max_len: natural [B, T] bool -> ends [B, T] bool.
    Within a run after the last natural end, every max_len-th byte closes a patch."""
    T = natural.shape[1]
    t = torch.arange(T, device=natural.device)
    last_nat = torch.where(natural, t, torch.full_like(t, -1)).cummax(1).values
    last_before = torch.cat([torch.full_like(last_nat[:, :1], -1), last_nat[:, :-1]], 1)
    run = t - last_before
    return natural | (run % max_len == 0)


class Patcher(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.kind, self.size, self.max_len = cfg.patcher, cfg.patch_size, cfg.longest_patch
        self.threshold = cfg.entropy_boundary
        self.sigma = cfg.soft_sigma
        if self.kind == "router":
            self.q = nn.Linear(cfg.d_local, cfg.d_local, bias=False)
            self.k = nn.Linear(cfg.d_local, cfg.d_local, bias=False)
        if self.kind == "soft":
            self.score = nn.Linear(cfg.d_local, 1)
            nn.init.constant_(self.score.bias, -torch.log(torch.tensor(cfg.patch_size - 1.0)).item())

    # parallel ----------------------------------------------------------------------------
    def static_end_positions(self, batch: int, length: int, device):
        """Fixed patches end at static positions: (positions [B, N], valid [B, N]) without looking
        at the data (what `compact(ends)` gives, with no host sync); None for the other patchers."""
        if self.kind != "fixed":
            return None
        n = length // self.size
        pos = (torch.arange(n, device=device) * self.size + self.size - 1).expand(batch, n)
        return pos, torch.ones(batch, n, dtype=torch.bool, device=device)

    def forward(self, x, h, entropy) -> Boundaries:
        """x [B, T] bytes, h [B, T, d] encoder states, entropy [B, T] nats of the aux head."""
        if self.kind == "fixed":
            t = torch.arange(x.shape[1], device=x.device)
            return Boundaries(((t + 1) % self.size == 0).expand(x.shape[0], -1))
        if self.kind == "whitespace":
            s = spacelike(x)
            prev = torch.cat([torch.ones_like(s[:, :1]), s[:, :-1]], 1)
            return Boundaries(bound_length(s & ~prev, self.max_len))
        if self.kind == "entropy":
            return Boundaries(bound_length(entropy > self.threshold, self.max_len))
        if self.kind == "entropy-monotonic":
            prev = torch.cat([entropy[:, :1], entropy[:, :-1]], 1)
            return Boundaries(bound_length(entropy - prev > self.threshold, self.max_len))
        if self.kind == "router":
            prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1)
            p = self.router_prob(h, prev)
            ends = bound_length(p >= 0.5, self.max_len)
            return Boundaries(ends, prob=p, aux_loss=self.ratio_loss(ends, p))
        # soft: coordinate z = cumsum(p); a natural end where floor(z) steps
        p = torch.sigmoid(self.score(h).squeeze(-1))
        z = p.double().cumsum(1)
        zprev = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], 1)
        natural = torch.floor(z) > torch.floor(zprev)
        ends = bound_length(natural, self.max_len)
        forced = ends & ~natural
        forced_before = forced.long().cumsum(1) - forced.long()
        return Boundaries(ends, coord=(z + forced_before).to(h.dtype), z=z, forced=forced)

    def router_prob(self, h, prev):
        cos = F.cosine_similarity(self.q(h), self.k(prev), dim=-1, eps=1e-6)
        return ((1 - cos) / 2).clamp(0, 1)

    def ratio_loss(self, ends, p):
        """H-Net's compression loss: pushes the boundary rate towards 1 / patch_size."""
        n = float(self.size)
        f = ends.to(p.dtype).mean()
        g = p.mean()
        return n / (n - 1) * ((n - 1) * f * g + (1 - f) * (1 - g))

    # decode ------------------------------------------------------------------------------
    def allocate(self, batch, d, device, dtype) -> PatcherState:
        z = torch.zeros(batch, device=device)
        return PatcherState(
            length=z.long(), last_entropy=z.to(dtype), last_byte=z.long() - 1,
            last_hidden=torch.zeros(batch, d, device=device, dtype=dtype),
            coord=z.double(), forced=z.long(),
        )

    def load(self, st: PatcherState, x, h, entropy, bnd: Boundaries, row: int):
        """Prefill hand-off for one row from a batch-1 forward over x [n] (h [1, n, d], entropy
        [1, n], its Boundaries): the state `step` would have reached after x."""
        ends = bnd.ends[0].nonzero()
        st.length[row] = x.numel() - 1 - (int(ends[-1]) if len(ends) else -1)
        st.last_entropy[row] = entropy[0, -1]
        st.last_byte[row] = x[-1]
        st.last_hidden[row] = h[0, -1]
        if bnd.z is not None:  # soft
            st.coord[row] = bnd.z[0, -1]
            st.forced[row] = bnd.forced[0].sum()

    def step(self, x, h, entropy, st: PatcherState):
        """One byte for every row: x [B] bytes, h [B, d], entropy [B]. Returns (ends [B] bool,
        coord [B] | None, prob [B] | None) and advances the state in place (no host sync)."""
        n = st.length + 1
        coord = prob = None
        if self.kind == "fixed":
            natural = torch.zeros_like(n, dtype=torch.bool)
            limit = self.size
        else:
            limit = self.max_len
            if self.kind == "whitespace":
                natural = spacelike(x) & ~spacelike(st.last_byte.clamp(min=0)) & (st.last_byte >= 0)
            elif self.kind == "entropy":
                natural = entropy > self.threshold
            elif self.kind == "entropy-monotonic":
                prev = torch.where(st.last_byte >= 0, st.last_entropy, entropy)
                natural = entropy - prev > self.threshold
            elif self.kind == "router":
                prob = self.router_prob(h, st.last_hidden)
                natural = prob >= 0.5
            else:
                p = torch.sigmoid(self.score(h).squeeze(-1))
                z0 = st.coord.clone()
                z = z0 + p.double()
                natural = torch.floor(z) > torch.floor(z0)
                coord = (z + st.forced).to(h.dtype)
                st.coord.copy_(z)
        ends = natural | (n >= limit)
        if self.kind == "soft":
            st.forced += (ends & ~natural).long()
        st.length.copy_(torch.where(ends, torch.zeros_like(n), n))
        if self.kind in ("entropy-monotonic",):
            st.last_entropy.copy_(entropy)
        if self.kind == "whitespace" or self.kind == "entropy-monotonic":
            st.last_byte.copy_(x)
        if self.kind == "router":
            st.last_hidden.copy_(h)
        return ends, coord, prob
