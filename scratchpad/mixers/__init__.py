"""Sequence mixers. Each has forward (parallel), scratch (read-only step from gathered
committed state), step (commit one position per row in place) and allocate (typed state)."""
from scratchpad.mixers.attention import AttentionCache, CausalAttention
from scratchpad.mixers.ssm import DiagonalSSM, SSMState

__all__ = ["AttentionCache", "CausalAttention", "DiagonalSSM", "SSMState"]
