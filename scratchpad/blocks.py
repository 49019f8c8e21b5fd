"""Pre-norm residual blocks (mixer + MLP) and stacks of them, with the mixers' forward /
scratch / decode interface (see scratchpad.mixers); Stack adds allocate and load."""
from __future__ import annotations

import torch.nn as nn

from scratchpad.layers import MLP, RMSNorm
from scratchpad.mixers import CausalAttention, DiagonalSSM


def make_mixer(kind: str, d: int, n_heads: int, ssm_expand: int, span: int | None):
    if kind == "ssm":
        return DiagonalSSM(d, ssm_expand)
    if kind == "attn":
        return CausalAttention(d, n_heads, span)
    raise ValueError(f"unknown mixer {kind!r}")


class Block(nn.Module):
    def __init__(self, kind, d, n_heads, ssm_expand, mlp_mult, span=None):
        super().__init__()
        self.kind = kind
        self.norm_mix = RMSNorm(d)
        self.mixer = make_mixer(kind, d, n_heads, ssm_expand, span)
        self.norm_mlp = RMSNorm(d)
        self.mlp = MLP(d, mlp_mult)

    def forward(self, x, reset=None):
        y, trace = self.mixer(self.norm_mix(x), reset=reset)
        x = x + y
        return x + self.mlp(self.norm_mlp(x)), trace

    def scratch(self, x, trace, parent):
        x = x + self.mixer.scratch(self.norm_mix(x), trace, parent)
        return x + self.mlp(self.norm_mlp(x))

    def decode(self, x, state, write=None, reset=None):
        """One position for every row (x [B, d]); state written where `write` (None: all rows)."""
        x = x + self.mixer.decode(self.norm_mix(x), state, write, reset)
        return x + self.mlp(self.norm_mlp(x))


class Stack(nn.Module):
    """Layers of blocks. `forward` also returns each layer's trace, which `scratch` (transient
    queries from committed positions) and `load` (prefill -> decode state) consume."""

    def __init__(self, kinds, d, n_heads, ssm_expand, mlp_mult, span=None):
        super().__init__()
        self.blocks = nn.ModuleList(Block(k, d, n_heads, ssm_expand, mlp_mult, span) for k in kinds)

    def forward(self, x, reset=None, scratch_x=None, scratch_parent=None):
        """x [B, N, d]; optional transient queries scratch_x [B, Q, d] from committed index
        scratch_parent [B, Q] (-1 = before any). Returns (x, scratch_x, traces)."""
        traces = []
        for block in self.blocks:
            x, trace = block(x, reset=reset)
            if scratch_x is not None:
                scratch_x = block.scratch(scratch_x, trace, scratch_parent)
            traces.append(trace)
        return x, scratch_x, traces

    def allocate(self, batch, capacity, device, dtype):
        return [b.mixer.allocate(batch, capacity, device, dtype) for b in self.blocks]

    def decode(self, x, states, write=None, reset=None):
        """One decode position for every row: x [B, d] -> [B, d]. Where `write` [B] bool is False
        the step is transient (caches and states read, never written); None writes every row."""
        for block, state in zip(self.blocks, states):
            x = block.decode(x, state, write, reset)
        return x

    def load(self, states, traces, count: int, row: int):
        for block, state, trace in zip(self.blocks, states, traces):
            block.mixer.load(state, trace, count, row)
