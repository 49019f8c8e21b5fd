"""Typed decode state for a batch of rows, allocated once per request batch."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scratchpad.patchers import PatcherState


@dataclass
class Counters:
    """Events the engine actually ran, per row [B] long."""

    bytes: torch.Tensor        # encoder/decoder steps
    commits: torch.Tensor      # committed trunk steps (one per closed patch)
    scratchpads: torch.Tensor  # transient trunk steps
    keys: torch.Tensor         # trunk entries read, summed over trunk steps (self included)
    aux: torch.Tensor          # aux-head steps (skipped when nothing needs the entropy)


@dataclass
class DecodeState:
    encoder: list              # per-layer SSMState / AttentionCache (byte level)
    aux: list
    decoder: list
    trunk: list                # per-layer SSMState / patch-granular AttentionCache
    patcher: PatcherState
    pool_ring: torch.Tensor    # [B, W, F] pooling features of the last W = longest_patch bytes, oldest first
    coord_ring: torch.Tensor   # [B, W] soft patcher coordinates of those bytes
    ctx: torch.Tensor          # [B, d_model] latest usable trunk output (start vector at first)
    counts: Counters
    patch_capacity: int        # committed patches the trunk KV cache can hold

    @property
    def batch(self) -> int:
        return self.ctx.shape[0]


def allocate_state(model, batch: int, max_bytes: int, device, dtype) -> DecodeState:
    """Preallocate every cache for `batch` rows of up to `max_bytes` bytes each."""
    cfg = model.cfg
    min_patch = cfg.patch_size if cfg.patcher == "fixed" else 1
    patches = max_bytes // min_patch + 1
    z = torch.zeros(batch, dtype=torch.long, device=device)
    return DecodeState(
        encoder=model.encoder.allocate(batch, max_bytes, device, dtype),
        aux=model.aux.allocate(batch, max_bytes, device, dtype),
        decoder=model.decoder.allocate(batch, max_bytes, device, dtype),
        trunk=model.trunk.allocate(batch, patches, device, dtype),
        patcher=model.patcher.allocate(batch, cfg.d_local, device, dtype),
        pool_ring=torch.zeros(batch, cfg.longest_patch, model.pooling.feature_dim,
                           device=device, dtype=dtype),
        coord_ring=torch.zeros(batch, cfg.longest_patch, device=device, dtype=dtype),
        ctx=model.start.detach().to(device, dtype).expand(batch, -1).clone(),
        counts=Counters(z.clone(), z.clone(), z.clone(), z.clone(), z.clone()),
        patch_capacity=patches,
    )
