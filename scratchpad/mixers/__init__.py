"""Sequence mixers (DiagonalSSM, CausalAttention), all with one interface:
  forward(x, reset)            parallel over x [B, T, d] -> (y, trace); scratch and load read the trace
  scratch(x, trace, parent)    transient queries x [B, Q, d] from gathered committed state; writes nothing
  allocate(batch, capacity, device, dtype)   the typed decode state (SSMState, AttentionCache),
                               which owns its tensors() and reset(row)
  decode(x, state, write, reset)   one position per row, x [B, d]; writes the state in place
                               where `write` [B] (None: every row)
  load(state, trace, count, row)   prefill hand-off: one row's decode state from a batch-1 trace"""
from scratchpad.mixers.attention import AttentionCache, CausalAttention
from scratchpad.mixers.ssm import DiagonalSSM, SSMState

__all__ = ["AttentionCache", "CausalAttention", "DiagonalSSM", "SSMState"]
