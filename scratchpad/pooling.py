"""Pooling a span of encoder states h[s..e] (a committed patch or a scratchpad's partial patch)
into one trunk input vector.

Per-byte features (norm, and keys/values for attention pooling) are computed once per byte by
`features`; every span then reads the same stretch of features: the `cfg.longest_patch` bytes
ending at e, with a mask for bytes before s. Commits and scratchpads share one code path, and
decode (which keeps the last `longest_patch` feature vectors per row in a ring) reproduces it.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn

from scratchpad.layers import RMSNorm


def gather_spans(h, end, length):
    """h [B, T, d], end [B, Q] -> the last `length` = W rows up to each end [B, Q, W, d]: h[end-W+1 .. end] (index < 0 -> zeros),
    and their absolute byte positions [B, Q, W]."""
    pos = end.unsqueeze(-1) - (length - 1) + torch.arange(length, device=h.device)
    idx = pos.clamp(min=0)
    B, Q, W = idx.shape
    win = torch.gather(h, 1, idx.reshape(B, Q * W, 1).expand(-1, -1, h.shape[-1])).view(B, Q, W, h.shape[-1])
    return win * (pos >= 0).unsqueeze(-1).to(h.dtype), pos


class Pooling(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.kind, self.sigma = cfg.pooling, cfg.soft_sigma
        d = cfg.d_local
        self.norm = RMSNorm(d)
        if self.kind == "attn":  # a learned query
            self.query = nn.Parameter(torch.randn(d) / math.sqrt(d))
        if self.kind == "xattn":  # the query is projected from the span's mean
            self.q = nn.Linear(d, d, bias=False)
        if self.kind in ("attn", "xattn"):
            self.kv = nn.Linear(d, 2 * d, bias=False)
        if self.kind == "gru":
            self.cell = nn.GRUCell(d, d)
        self.proj = nn.Linear(d, cfg.d_model, bias=False)

    @property
    def feature_dim(self) -> int:
        d = self.norm.weight.shape[0]
        return 3 * d if self.kind in ("attn", "xattn") else d

    def features(self, h):
        """Per-byte pooling features [..., F] of encoder states h [..., d]: the normed state,
        followed by its key and value for attention pooling."""
        n = self.norm(h)
        return torch.cat([n, self.kv(n)], -1) if self.kind in ("attn", "xattn") else n

    def forward(self, win, valid, weight_coord=None, centre=None):
        """win [N, W, F] byte features (oldest first), valid [N, W] bool (at least the last one);
        soft pooling also takes coordinates weight_coord [N, W] and the span's centre [N].
        Returns [N, d_model]."""
        m = valid.unsqueeze(-1).to(win.dtype)
        d = self.norm.weight.shape[0]
        if self.kind == "mean":
            pooled = (win * m).sum(1) / m.sum(1)
        elif self.kind == "soft":
            logw = -((weight_coord - centre.unsqueeze(-1)) ** 2) / (2 * self.sigma**2)
            w = torch.softmax(logw.masked_fill(~valid, float("-inf")), dim=-1)
            pooled = (w.unsqueeze(-1) * win).sum(1)
        elif self.kind in ("attn", "xattn"):
            x, k, v = win.split(d, dim=-1)
            if self.kind == "attn":
                q = self.query.expand(win.shape[0], -1)
            else:
                q = self.q((x * m).sum(1) / m.sum(1))
            scores = (k @ q.unsqueeze(-1)).squeeze(-1) / math.sqrt(d)
            w = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)
            pooled = (w.unsqueeze(-1) * v).sum(1)
        else:  # gru: run over the span in order; masked steps keep the state
            state = win.new_zeros(win.shape[0], d)
            for i in range(win.shape[1]):
                state = torch.where(valid[:, i : i + 1], self.cell(win[:, i], state), state)
            pooled = state
        return self.proj(pooled)
