"""Causal multi-head attention with RoPE and a preallocated (optionally ring) KV cache.

In the trunk a position is a patch, so the cache holds one entry per committed patch. For byte
level layers a `span` bounds both how far back a byte attends and the cache (a ring buffer: keys carry
their rotary phase, so slot order does not matter).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from scratchpad.layers import rotary


@dataclass
class AttentionCache:
    """k, v: [B, H, C, dh] with rotary applied; length: [B] long, positions committed per row."""

    k: torch.Tensor
    v: torch.Tensor
    length: torch.Tensor

    @property
    def capacity(self) -> int:
        return self.k.shape[2]


def attend(q, K, V, key_mask, k_self=None, v_self=None):
    """Softmax attention of q [N, H, Lq, dh] over K, V [N, H, Lk, dh] where key_mask [N, 1|H, Lq, Lk],
    plus (optionally) each query's own key/value [N, H, Lq, dh] that is not in K."""
    if K.shape[-2] == 0:
        return v_self
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = (q @ K.transpose(-1, -2)) * scale
    scores = scores.masked_fill(~key_mask, float("-inf"))
    if k_self is None:
        return torch.softmax(scores, dim=-1) @ V
    self_score = (q * k_self).sum(-1, keepdim=True) * scale
    top = torch.maximum(scores.amax(-1, keepdim=True), self_score)
    w = torch.exp(scores - top)
    w_self = torch.exp(self_score - top)
    return (w @ V + w_self * v_self) / (w.sum(-1, keepdim=True) + w_self)


def banded_attention(q, k, v, span: int):
    """Causal attention where query t reads keys t-span+1 .. t, in O(T * span) memory and time:
    q, k, v [B, H, T, dh] -> [B, H, T, dh]."""
    T = q.shape[2]
    kw = F.pad(k, (0, 0, span - 1, 0)).unfold(2, span, 1)  # [B, H, T, dh, span]; slot i = key t-span+1+i
    vw = F.pad(v, (0, 0, span - 1, 0)).unfold(2, span, 1)
    scores = (q.unsqueeze(-1) * kw).sum(-2) / math.sqrt(q.shape[-1])
    valid = torch.arange(T, device=q.device).unsqueeze(1) + torch.arange(span, device=q.device) >= span - 1
    scores = scores.masked_fill(~valid, float("-inf"))
    return (torch.softmax(scores, -1).unsqueeze(-2) * vw).sum(-1)


class CausalAttention(nn.Module):
    def __init__(self, d: int, n_heads: int, span: int | None = None):
        super().__init__()
        if d % n_heads:
            raise ValueError(f"width {d} is not divisible by n_heads {n_heads}")
        self.h, self.dh, self.span = n_heads, d // n_heads, span
        self.qkv = nn.Linear(d, 3 * d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def project(self, x, pos):
        """x [N, L, d], pos [N or 1, L] -> q, k, v [N, H, L, dh] with rotary on q, k."""
        N, L, _ = x.shape
        q, k, v = self.qkv(x).view(N, L, 3, self.h, self.dh).permute(2, 0, 3, 1, 4)
        p = pos.unsqueeze(1)
        return rotary(q, p), rotary(k, p), v

    def merge(self, o):
        N, H, L, dh = o.shape
        return self.out(o.transpose(1, 2).reshape(N, L, H * dh))

    def forward(self, x, reset=None):
        """x [B, T, d] -> (y [B, T, d], trace (k, v) [B, H, T, dh])."""
        if reset is not None:
            raise ValueError("attention mixers do not support state resets")
        B, T, _ = x.shape
        pos = torch.arange(T, device=x.device).unsqueeze(0)
        q, k, v = self.project(x, pos)
        if self.span is None or self.span >= T:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            o = banded_attention(q, k, v, self.span)
        return self.merge(o), (k, v)

    def scratch(self, x, trace, parent):
        """Transient queries x [B, Q, d] at patch parent+1 over committed keys <= parent, plus self."""
        K, V = trace
        q, k, v = self.project(x, parent + 1)
        mask = (torch.arange(K.shape[2], device=x.device).view(1, 1, -1) <= parent.unsqueeze(-1)).unsqueeze(1)
        return self.merge(attend(q, K, V, mask, k, v))

    def allocate(self, batch: int, capacity: int, device, dtype) -> AttentionCache:
        cap = min(capacity, self.span) if self.span else capacity
        z = torch.zeros(batch, self.h, cap, self.dh, device=device, dtype=dtype)
        return AttentionCache(z, z.clone(), torch.zeros(batch, dtype=torch.long, device=device))

    def _rows_view(self, cache: AttentionCache, rows):
        """Keys/values of `rows`, cut to the longest valid prefix (a view when all rows step)."""
        span = int(min(cache.length[rows].max().item() + 1, cache.capacity))
        if rows.numel() == cache.k.shape[0]:
            return cache.k[:, :, :span], cache.v[:, :, :span], span
        return cache.k[rows, :, :span], cache.v[rows, :, :span], span

    def step(self, x, cache: AttentionCache, rows, reset=None):
        """Commit one position for `rows` [R] (sorted, distinct): x [R, d] -> y [R, d]."""
        if reset is not None:
            raise ValueError("attention mixers do not support state resets")
        pos = cache.length[rows]
        q, k, v = self.project(x.unsqueeze(1), pos.unsqueeze(1))
        slot = pos % cache.capacity
        cache.k[rows, :, slot] = k[:, :, 0]
        cache.v[rows, :, slot] = v[:, :, 0]
        K, V, span = self._rows_view(cache, rows)
        valid = torch.arange(span, device=x.device).unsqueeze(0) <= pos.clamp(max=cache.capacity - 1).unsqueeze(1)
        cache.length[rows] += 1
        return self.merge(attend(q, K, V, valid.view(-1, 1, 1, span))).squeeze(1)

    def transient(self, x, cache: AttentionCache, rows):
        """Read-only step at the next position for `rows`: x [R, d] -> y [R, d]."""
        pos = cache.length[rows]
        q, k, v = self.project(x.unsqueeze(1), pos.unsqueeze(1))
        K, V, span = self._rows_view(cache, rows)
        valid = torch.arange(span, device=x.device).unsqueeze(0) < pos.clamp(max=cache.capacity).unsqueeze(1)
        return self.merge(attend(q, K, V, valid.view(-1, 1, 1, span), k, v)).squeeze(1)

    def load(self, cache: AttentionCache, trace, count: int, row: int):
        """Prefill hand-off for one row from a batch-1 trace: the last `capacity` of `count` positions."""
        K, V = trace
        first = max(0, count - cache.capacity)
        slots = torch.arange(first, count, device=K.device) % cache.capacity
        cache.k[row, :, slots] = K[0, :, first:count]
        cache.v[row, :, slots] = V[0, :, first:count]
        cache.length[row] = count
