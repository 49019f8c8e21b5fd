"""The decode state of a ScratchpadLM over fixed slots, and its loading from the parallel forward.

    state = model.allocate_state(slots)                 # every cache, allocated once
    model.load_state(state, slot, prompt, Trigger(1.5)) # prefill: parallel forward -> caches
    logits = model.step(x, state)                       # one byte for every slot (scratchpad/step.py)

A slot holds one sequence at a time; the step runs every slot (a free slot steps on garbage
nobody reads). Every cache type owns its tensors and its per-slot reset: SSMState and
AttentionCache (mixers), PagedCache and the shared PageTable (kv_pages: the trunk's attention
layers, one entry per committed patch), PatcherState; and each slot's trigger is a row of
TriggerRows (scratchpad/trigger.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from scratchpad.accounting import Events, row_events
from scratchpad.kv_pages import PagedCache, PageTable
from scratchpad.patchers import PatcherState
from scratchpad.trigger import Trigger, TriggerRows

# rows of DecodeState.counts: Events.COUNTS (bytes, commits, scratchpads, keys, aux)
ROW = {name: i for i, name in enumerate(Events.COUNTS)}


@dataclass
class DecodeState:
    encoder: list              # per-layer SSMState / byte-level ring AttentionCache
    aux: list
    decoder: list
    trunk: list                # per-layer SSMState / PagedCache (patch-granular pages)
    pages: PageTable
    patcher: PatcherState
    pool_ring: torch.Tensor    # [B, W, F] pooling features, W = longest_patch: byte t at slot t % W
    coord_ring: torch.Tensor   # [B, W] soft patcher coordinates of those bytes
    ctx: torch.Tensor          # [B, d_model] latest usable trunk output (start vector at first)
    start: torch.Tensor        # [d_model] the start vector a reset slot's ctx begins from
    counts: torch.Tensor       # [5, B] long: each slot's Events since its last load (rows: ROW)
    trigger: TriggerRows       # each slot's trigger (tau, every [B]; off: no scratchpads)
    active: torch.Tensor       # [B] bool, the slot holds a sequence
    logits: torch.Tensor       # [B, 256] next-byte logits of each slot

    @property
    def slots(self) -> int:
        return self.ctx.shape[0]

    @property
    def trunk_length(self) -> torch.Tensor:
        """Committed patches per slot (= the trunk caches' length; a view of counts)."""
        return self.counts[ROW["commits"]]

    def caches(self) -> list:
        """Every cache object: the layers' states, the page table and the patcher's state."""
        return [*self.encoder, *self.aux, *self.decoder, *self.trunk, self.pages, self.patcher]

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the step reads or writes, except the paged KV pools (see PagedCache.tensors)."""
        own = [self.pool_ring, self.coord_ring, self.ctx, self.counts, self.active, self.logits, *self.trigger.tensors()]
        return own + [t for c in self.caches() for t in c.tensors()]

    def reset(self, slot: int):
        """Clear one slot to the beginning-of-text state (its KV pages go back, its trigger is off)."""
        for cache in self.caches():
            cache.reset(slot)
        self.pool_ring[slot], self.coord_ring[slot], self.counts[:, slot], self.logits[slot] = 0, 0, 0, 0
        self.ctx[slot] = self.start
        self.trigger.reset(slot)
        self.active[slot] = False

    def events(self, slot: int) -> Events:
        """What the slot ran since its last load (or reset)."""
        return Events(*self.counts[:, slot].tolist())


def allocate_state(model, slots: int, device=None, dtype=None, page: int = 16, pages: int | None = None) -> DecodeState:
    """Caches for `slots` rows of up to cfg.max_seq_len bytes (device, dtype: the model's by
    default); trunk attention KV in pages of `page` patches from a pool of `pages` (None: grows
    on demand; a captured step needs its worst case up front, it must never move)."""
    cfg, p = model.cfg, next(model.parameters())
    device, dtype = device or p.device, dtype or p.dtype
    n = cfg.max_seq_len
    counts = torch.zeros(len(ROW), slots, dtype=torch.long, device=device)
    table = PageTable(slots, n, page, device, pages)
    trunk = [PagedCache(table, b.mixer.h, b.mixer.dh, counts[ROW["commits"]], device, dtype) if b.kind == "attn"
             else b.mixer.allocate(slots, n, device, dtype) for b in model.trunk.blocks]
    start = model.start.detach().to(device, dtype)
    return DecodeState(
        encoder=model.encoder.allocate(slots, n, device, dtype),
        aux=model.aux.allocate(slots, n, device, dtype),
        decoder=model.decoder.allocate(slots, n, device, dtype),
        trunk=trunk,
        pages=table,
        patcher=model.patcher.allocate(slots, cfg.d_local, device, dtype),
        pool_ring=torch.zeros(slots, cfg.longest_patch, model.pooling.feature_dim, device=device, dtype=dtype),
        coord_ring=torch.zeros(slots, cfg.longest_patch, device=device, dtype=dtype),
        ctx=start.expand(slots, -1).clone(),
        start=start,
        counts=counts,
        trigger=TriggerRows.allocate(slots, device, dtype),
        active=torch.zeros(slots, dtype=torch.bool, device=device),
        logits=torch.zeros(slots, 256, device=device, dtype=dtype),
    )


@torch.no_grad()
def load_state(model, state: DecodeState, slot: int, prompt: torch.Tensor, trigger: Trigger):
    """Reset `slot` and load it from the parallel forward over prompt [n] (n >= 1) at `trigger`
    (the slot keeps the trigger the model runs: Trigger.for_model): every cache as decode would
    have left it after the prompt, the slot's events, and state.logits[slot] = the next-byte
    logits. The slot is active from here on (until its reset)."""
    if model.training:
        raise ValueError("decoding needs the model in eval mode (call model.eval() first): training mode "
                         "drops scratchpads at random")
    cfg, st = model.cfg, state
    trigger = trigger.for_model(cfg)
    st.reset(slot)
    n = prompt.numel()
    out = model(prompt.view(1, n).to(st.ctx.device), trigger=trigger, keep_trace=True)
    tr, bnd = out.trace, out.trace["boundaries"]
    model.encoder.load(st.encoder, tr["encoder"], n, slot)
    model.aux.load(st.aux, tr["aux"], n, slot)
    model.decoder.load(st.decoder, tr["decoder"], n, slot)
    commits = int(out.ends.sum())
    st.pages.ensure(slot, commits)  # pages for the committed patches and the next one
    model.trunk.load(st.trunk, tr["trunk"], commits, slot)
    model.patcher.load(st.patcher, prompt, tr["h"], out.entropy, bnd, slot)
    W = cfg.longest_patch
    k = min(W, n)
    ring = torch.arange(n - k, n, device=st.ctx.device) % W
    st.pool_ring[slot, ring] = model.pooling.features(tr["h"][0, n - k:])
    if bnd.coord is not None:
        st.coord_ring[slot, ring] = bnd.coord[0, n - k:]
    st.ctx[slot] = tr["ctx"][0, -1]
    _, scratchpads, keys = row_events(out.ends, out.scratch)
    ev = Events(bytes=n, commits=commits, scratchpads=int(scratchpads), keys=int(keys),
                aux=n if cfg.aux_runs(trigger.entropy) else 0)
    st.counts[:, slot] = torch.tensor(list(ev.counts().values()), device=st.ctx.device)
    st.trigger.set(slot, trigger)
    st.logits[slot] = out.logits[0, -1]
    st.active[slot] = True
