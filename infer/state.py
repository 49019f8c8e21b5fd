"""Fixed decode slots: every cache and per-slot setting, allocated once for `slots` rows.

A slot holds one sequence at a time. The decode step runs every slot (a free slot steps on
garbage that nobody reads); `reset` clears a slot before a prefill loads a new sequence into it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from infer.kv_pages import PagedCache, PageTable
from scratchpad.accounting import Events
from scratchpad.mixers import AttentionCache, CausalAttention, SSMState
from scratchpad.patchers import PatcherState

# rows of SlotState.counts: the events each slot ran since its last prefill
BYTES, COMMITS, SCRATCHPADS, KEYS, AUX = range(5)


@dataclass
class SlotState:
    encoder: list              # per-layer SSMState / byte-level ring AttentionCache
    aux: list
    decoder: list
    trunk: list                # per-layer SSMState / PagedCache (patch-granular pages)
    pages: PageTable
    patcher: PatcherState
    pool_ring: torch.Tensor    # [B, W, F] pooling features, W = longest_patch: byte t at slot t % W
    coord_ring: torch.Tensor   # [B, W] soft patcher coordinates of those bytes
    ctx: torch.Tensor          # [B, d_model] latest usable trunk output (start vector at first)
    counts: torch.Tensor       # [5, B] long: bytes, commits, scratchpads, keys, aux (see above)
    tau: torch.Tensor          # [B] entropy threshold per slot (inf: no entropy trigger)
    every: torch.Tensor        # [B] long: a scratchpad at every k-th byte of a patch (0: none)
    active: torch.Tensor       # [B] bool, the slot holds a sequence
    logits: torch.Tensor       # [B, 256] next-byte logits of each slot

    @property
    def slots(self) -> int:
        return self.ctx.shape[0]

    @property
    def trunk_length(self) -> torch.Tensor:
        """Committed patches per slot (= the trunk caches' length; a view of counts)."""
        return self.counts[COMMITS]

    def events(self, slot: int) -> Events:
        c = self.counts[:, slot].tolist()
        return Events(bytes=c[BYTES], commits=c[COMMITS], scratchpads=c[SCRATCHPADS], keys=c[KEYS], aux=c[AUX])


def allocate_slots(model, slots: int, device, dtype, page: int = 16, pages: int | None = None) -> SlotState:
    """Caches for `slots` rows of up to cfg.max_seq_len bytes; trunk KV in pages of `page` patches."""
    cfg = model.cfg
    n = cfg.max_seq_len
    counts = torch.zeros(5, slots, dtype=torch.long, device=device)
    table = PageTable(slots, n, page, device, pages)
    trunk = []
    for block in model.trunk.blocks:
        mixer = block.mixer
        if isinstance(mixer, CausalAttention):
            trunk.append(PagedCache(table, mixer.h, mixer.dh, counts[COMMITS], device, dtype))
        else:
            trunk.append(mixer.allocate(slots, n, device, dtype))
    return SlotState(
        encoder=model.encoder.allocate(slots, n, device, dtype),
        aux=model.aux.allocate(slots, n, device, dtype),
        decoder=model.decoder.allocate(slots, n, device, dtype),
        trunk=trunk,
        pages=table,
        patcher=model.patcher.allocate(slots, cfg.d_local, device, dtype),
        pool_ring=torch.zeros(slots, cfg.longest_patch, model.pooling.feature_dim, device=device, dtype=dtype),
        coord_ring=torch.zeros(slots, cfg.longest_patch, device=device, dtype=dtype),
        ctx=model.start.detach().to(device, dtype).expand(slots, -1).clone(),
        counts=counts,
        tau=torch.full((slots,), float("inf"), device=device, dtype=dtype),
        every=torch.zeros(slots, dtype=torch.long, device=device),
        active=torch.zeros(slots, dtype=torch.bool, device=device),
        logits=torch.zeros(slots, 256, device=device, dtype=dtype),
    )


def reset_slot(model, state: SlotState, slot: int):
    """Clear one slot to the beginning-of-text state and give back its KV pages."""
    for layer in state.encoder + state.aux + state.decoder + state.trunk:
        if isinstance(layer, SSMState):
            layer.h[slot] = 0
        elif isinstance(layer, AttentionCache):
            layer.k[slot], layer.v[slot], layer.length[slot] = 0, 0, 0
    state.pages.release(slot)
    ps = state.patcher
    for t in vars(ps).values():
        t[slot] = 0
    ps.last_byte[slot] = -1
    state.pool_ring[slot] = 0
    state.coord_ring[slot] = 0
    state.ctx[slot] = model.start.detach().to(state.ctx.dtype)
    state.counts[:, slot] = 0
    state.logits[slot] = 0
