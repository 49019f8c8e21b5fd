"""Patch-granular paged KV cache for the trunk's attention layers (the decode state that
`ScratchpadLM.allocate_state` gives them; byte-level layers keep AttentionCache rings).

A trunk position is a committed patch. Each slot owns pages of `page` positions, allocated on
demand as its patches commit (never one entry per byte, whatever the patcher), and returned when
the slot is freed. Page 0 is a trash page: free slots and unallocated table entries point at it,
so the decode step can write every row unconditionally (a write at position `length` is beyond
the valid keys until the commit advances the length). All attention layers share the page table.
"""
from __future__ import annotations

import math

import torch

from scratchpad.layers import rotary_cos_sin
from scratchpad.mixers.attention import attend, rope_lookup


class PageTable:
    """Host-side page ownership plus the device table [slots, max_pages] the step reads."""

    def __init__(self, slots: int, max_positions: int, page: int, device, pages: int | None = None):
        self.page = page
        self.width = math.ceil((max_positions + 1) / page)
        self.table = torch.zeros(slots, self.width, dtype=torch.long, device=device)
        self.owned: list[list[int]] = [[] for _ in range(slots)]
        self.capacity = pages if pages is not None else 1 + 2 * slots
        self.free = list(range(self.capacity - 1, 0, -1))
        self.caches: list[PagedCache] = []
        self.fixed_span: int | None = None  # a compiled or captured step reads a fixed number of pages
        self.grown = 0

    @property
    def span(self) -> int:
        """Pages the step gathers: the most any slot holds, or the fixed count of a captured step."""
        return self.fixed_span if self.fixed_span is not None else self.held_span

    @property
    def held_span(self) -> int:
        return max(1, max(len(o) for o in self.owned))

    def pages_held(self, slot: int) -> int:
        return len(self.owned[slot])

    def ensure(self, slot: int, position: int):
        """Make sure the page holding `position` (and every page before it) belongs to `slot`."""
        need = position // self.page + 1
        if need > self.width:
            raise ValueError(f"position {position} beyond the page table ({self.width} pages)")
        owned = self.owned[slot]
        while len(owned) < need:
            if not self.free:
                self._grow()
            p = self.free.pop()
            self.table[slot, len(owned)] = p
            owned.append(p)

    def reset(self, slot: int):
        """Give the slot's pages back (its table row points at the trash page again)."""
        self.free.extend(reversed(self.owned[slot]))
        self.owned[slot] = []
        self.table[slot].zero_()

    def tensors(self) -> list[torch.Tensor]:
        return [self.table]

    def _grow(self):
        """Double the pool (a rare host-side reallocation; captured graphs must be rebuilt)."""
        old = self.capacity
        self.capacity *= 2
        self.free.extend(range(self.capacity - 1, old - 1, -1))
        for c in self.caches:
            c.grow(self.capacity)
        self.grown += 1


class PagedCache:
    """One trunk attention layer: k, v pools [H, pages, page, dh] (head-major, so the pages of all
    slots gather into one contiguous [H, B, positions, dh] block); length [B] is shared (the slot's
    committed patches: the decode state's commit count, which the step advances after a commit)."""

    def __init__(self, table: PageTable, heads: int, dh: int, length: torch.Tensor, device, dtype):
        self.pages, self.length = table, length
        shape = (heads, table.capacity, table.page, dh)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.cos, self.sin = rotary_cos_sin(torch.arange(table.width * table.page, device=device), dh, dtype)
        table.caches.append(self)

    @property
    def bytes_per_position(self) -> int:
        return 2 * self.k.shape[0] * self.k.shape[3] * self.k.element_size()

    def reset(self, slot: int):
        """Nothing of its own to clear: the slot's pages go back with the shared PageTable's reset,
        and its length is the decode state's commit count."""

    def tensors(self) -> list[torch.Tensor]:
        """None for a snapshot: the step writes a slot's entry at its length, beyond every key read
        until a commit moves the length, so restoring the lengths undoes a step's writes."""
        return []

    def grow(self, capacity: int):
        extra = capacity - self.k.shape[1]
        self.k = torch.cat([self.k, self.k.new_zeros(self.k.shape[0], extra, *self.k.shape[2:])], 1)
        self.v = torch.cat([self.v, self.v.new_zeros(self.v.shape[0], extra, *self.v.shape[2:])], 1)

    def rope(self, pos):
        return rope_lookup(self.cos, self.sin, pos)

    def keys(self, span=None):
        """K, V [H, B, n * page, dh] (head-major) gathered through the first n = pages.span pages of
        every slot's table (one copy), and valid [B, n * page]: positions before the slot's
        length, within the attention span."""
        n = self.pages.span
        idx = self.pages.table[:, :n].reshape(-1)
        H, P, dh = self.k.shape[0], self.pages.page, self.k.shape[3]
        B = self.length.shape[0]
        K = self.k.index_select(1, idx).view(H, B, n * P, dh)
        V = self.v.index_select(1, idx).view(H, B, n * P, dh)
        age = self.length.unsqueeze(1) - torch.arange(n * P, device=idx.device)
        valid = age > 0
        if span is not None:
            valid = valid & (age < span)
        return K, V, valid

    def attend(self, q, k_self, v_self, span=None):
        """q, k_self, v_self [B, H, 1, dh] -> [B, H, 1, dh]: each slot's query over its cached
        positions plus its own key, computed head-major so the gathered pages are used as they are."""
        K, V, valid = self.keys(span)
        o = attend(q.transpose(0, 1), K, V, valid.view(1, valid.shape[0], 1, -1), k_self.transpose(0, 1),
                   v_self.transpose(0, 1))
        return o.transpose(0, 1)

    def step(self, q, k, v, span=None, write=None):
        """One decode position: store, then attend -> [B, H, 1, dh]. The stored entry sits at
        `length`, beyond the keys the query reads, so the order does not change the result; storing
        first lets a compiled step write the pools in place (read first, the pools are cloned at
        every step to keep the values the gather reads: ~12 ms per byte for the byte baseline at
        batch 16)."""
        self.store(k, v, write)
        return self.attend(q, k, v, span)

    def store(self, k, v, write=None):
        """Write k, v [B, H, 1, dh] at each slot's position `length` (every row: for rows that do
        not commit the entry stays beyond the valid keys and the next commit overwrites it)."""
        pos = self.length.clamp(max=self.pages.width * self.pages.page - 1)
        page = self.pages.table.gather(1, (pos // self.pages.page).unsqueeze(1)).squeeze(1)
        off = pos % self.pages.page
        self.k[:, page, off] = k[:, :, 0].transpose(0, 1)
        self.v[:, page, off] = v[:, :, 0].transpose(0, 1)

    def load(self, trace, count: int, slot: int):
        """Prefill hand-off: the first `count` positions of a batch-1 trace (k, v) [1, H, T, dh]
        into one slot's pages (which must be ensured; the length is the state's commit count)."""
        K, V = trace[0][0], trace[1][0]
        P = self.pages.page
        for i, p in enumerate(self.pages.owned[slot]):
            lo, hi = i * P, min(count, (i + 1) * P)
            if lo >= hi:
                break
            self.k[:, p, : hi - lo] = K[:, lo:hi]
            self.v[:, p, : hi - lo] = V[:, lo:hi]
