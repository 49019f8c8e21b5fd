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

from scratchpad.layers import apply_rotary, rotary, rotary_cos_sin


def rope_lookup(cos, sin, pos):
    """Rotary cos, sin tables [positions, dh // 2] at positions pos [B] -> [B, 1, 1, dh // 2]."""
    pos = pos.clamp(max=cos.shape[0] - 1)  # a free decode slot keeps stepping; its values are unused
    return cos[pos].view(-1, 1, 1, cos.shape[-1]), sin[pos].view(-1, 1, 1, sin.shape[-1])


@dataclass
class AttentionCache:
    """A ring of C slots per row for byte-level layers: k, v [B, H, C, dh] with rotary applied,
    length [B] long (positions written per row), rotary tables cos, sin [positions, dh // 2]."""

    k: torch.Tensor
    v: torch.Tensor
    length: torch.Tensor
    cos: torch.Tensor
    sin: torch.Tensor

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def reset(self, slot: int):
        self.k[slot], self.v[slot], self.length[slot] = 0, 0, 0

    def tensors(self) -> list[torch.Tensor]:
        return [self.k, self.v, self.length]

    def rope(self, pos):
        return rope_lookup(self.cos, self.sin, pos)

    def keys(self, span=None):
        """All C slots and which of them the next query (at position length) may read, self excluded:
        the slot's newest position p = length - 1 - age must exist and lie within the attention span."""
        C = self.capacity
        age = (self.length.unsqueeze(1) - 1 - torch.arange(C, device=self.k.device)) % C
        valid = age < self.length.unsqueeze(1)
        if span is not None:
            valid = valid & (age < span - 1)
        return self.k, self.v, valid

    def attend(self, q, k_self, v_self, span=None):
        """q, k_self, v_self [B, H, 1, dh] -> [B, H, 1, dh] over the valid slots plus self."""
        K, V, valid = self.keys(span)
        return attend(q, K, V, valid.view(valid.shape[0], 1, 1, -1), k_self, v_self)

    def step(self, q, k, v, span=None, write=None):
        """One decode position: attend, then store (the store overwrites the ring's oldest slot,
        which the query may still read) -> [B, H, 1, dh]."""
        o = self.attend(q, k, v, span)
        self.store(k, v, write)
        return o

    def load(self, trace, count: int, row: int):
        """One row from a batch-1 trace (k, v) [1, H, T, dh]: the last `capacity` of `count` positions."""
        K, V = trace
        first = max(0, count - self.capacity)
        slots = torch.arange(first, count, device=K.device) % self.capacity
        self.k[row, :, slots] = K[0, :, first:count]
        self.v[row, :, slots] = V[0, :, first:count]
        self.length[row] = count

    def store(self, k, v, write=None):
        """Write k, v [B, H, 1, dh] at slot length % C and advance (rows where write, or all)."""
        if write is not None:
            raise ValueError("a byte-level ring cache writes every row at every byte")
        slot = (self.length % self.capacity).view(-1, 1, 1, 1).expand(-1, self.k.shape[1], 1, self.k.shape[3])
        self.k.scatter_(2, slot, k)
        self.v.scatter_(2, slot, v)
        self.length += 1


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
        """A ring of min(capacity, span) slots per row (byte-level layers; allocate_state gives the
        trunk's attention layers paged caches instead, see scratchpad/kv_pages.py)."""
        cap = min(capacity, self.span) if self.span else capacity
        z = torch.zeros(batch, self.h, cap, self.dh, device=device, dtype=dtype)
        cos, sin = rotary_cos_sin(torch.arange(capacity + 1, device=device), self.dh, dtype)
        return AttentionCache(z, z.clone(), torch.zeros(batch, dtype=torch.long, device=device), cos, sin)

    def decode(self, x, cache, write=None, reset=None):
        """One position for every row at its cache length: x [B, d] -> y [B, d]. The query attends
        to the row's cached keys and to its own key; the new key/value is stored where `write`
        [B] bool (None: every row) and the cache decides whether that advances the row's length
        (a ring advances itself; a paged trunk cache advances with the decode state's commit count).
        No host sync: every shape is fixed by the cache."""
        if reset is not None:
            raise ValueError("attention mixers do not support state resets")
        pos = cache.length
        qkv = self.qkv(x).view(-1, 3, self.h, 1, self.dh)
        cos, sin = cache.rope(pos)
        q, k = apply_rotary(qkv[:, 0], cos, sin), apply_rotary(qkv[:, 1], cos, sin)
        v = qkv[:, 2]
        o = cache.step(q, k, v, self.span, write)
        return self.out(o.reshape(o.shape[0], self.h * self.dh))

    def load(self, cache, trace, count: int, row: int):
        """Prefill hand-off for one row from a batch-1 trace (k, v) [1, H, T, dh]: the cache (a ring,
        or the trunk's pages) keeps what it holds of the first `count` positions."""
        cache.load(trace, count, row)
