"""The per-byte decode step of a ScratchpadLM over a DecodeState (scratchpad/decode.py): one byte
for every slot at once, equal to the parallel forward at the same positions.

    front  encoder step -> aux entropy (when run_aux) -> patcher -> pooling-feature ring;
           which slots commit (the byte closes a patch) or scratch (the slot's trigger fires:
           state.trigger, scratchpad/trigger.py)
    trunk  one trunk pass for all slots: the write mask lets SSM states and KV advance where a
           slot commits; elsewhere the pass is transient; ctx takes the output where needed
    back   decoder step -> head -> state.logits; the slots' event counters

`step` runs the trunk only when some slot commits or scratches (one flag read back per byte);
an engine runs the three pieces itself to compile them or capture them as CUDA graphs (no
`nonzero`, no row gathers, no `.item()`: every shape is fixed by the slots). The study
variants on this path (soft patcher and pooling, router, patch-AR decoder) are chosen once,
when the step is built, as the functions below; the common path has no branch on them.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from scratchpad.decode import ROW, DecodeState
from scratchpad.layers import entropy_nats


class Front(NamedTuple):
    """What the front of a step hands to the trunk and the back (every field [B, ...])."""

    h: torch.Tensor                # [B, d_local] encoder output
    aux_h: torch.Tensor | None     # [B, d_local] aux stack output (None when the aux stack did not run)
    ends: torch.Tensor             # [B] bool: the byte closes a patch (commit)
    scratch: torch.Tensor          # [B] bool: a transient trunk step
    need: torch.Tensor             # [B] bool: ends | scratch
    prob: torch.Tensor | None      # [B] router boundary probability (router patcher only)
    open_len: torch.Tensor         # [B] long: bytes of the open patch, this one included
    ring_pos: torch.Tensor         # [B] long: the feature-ring slot of this byte


class ByteStep:
    def __init__(self, model):
        self.model, self.cfg = model, model.cfg
        soft, router = self.cfg.patcher == "soft", self.cfg.patcher == "router"
        self.pool = self._pool_soft if soft else self._pool_window
        self.keep_coord = self._keep_coord if soft else _ignore
        self.commit_scale = self._router_scale if router else _unscaled
        self.decoder_reset = _patch_start if self.cfg.decoder == "patch-ar" else _no_reset

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, state: DecodeState, run_aux: bool) -> torch.Tensor:
        """Feed byte x [B] to every slot -> state.logits [B, 256]; the trunk runs only when some
        slot commits or scratches."""
        front = self.front(x, state, run_aux)
        if bool(front.need.any()):
            self.trunk(state, front)
        return self.back(x, state, front, run_aux)

    def front(self, x, state: DecodeState, run_aux: bool) -> Front:
        m, st = self.model, state
        h = m.encoder.decode(m.embed(x), st.encoder)
        aux_h = m.aux.decode(h, st.aux) if run_aux else None
        entropy = entropy_nats(m.aux_logits(aux_h)) if run_aux else torch.zeros_like(st.trigger.tau)
        open_len = st.patcher.length + 1
        ends, coord, prob = m.patcher.step(x, h, entropy, st.patcher)
        ends = ends & st.active
        rows = torch.arange(st.slots, device=x.device)
        ring_pos = st.counts[ROW["bytes"]] % self.cfg.longest_patch
        st.pool_ring[rows, ring_pos] = m.pooling.features(h)
        self.keep_coord(st, rows, ring_pos, coord)
        scratch = st.trigger.fires(entropy, open_len) & ~ends & st.active
        return Front(h, aux_h, ends, scratch, ends | scratch, prob, open_len, ring_pos)

    def trunk(self, state: DecodeState, f: Front):
        """One trunk pass for every slot: commits where f.ends (states and KV advance), transient
        elsewhere; ctx takes the output where f.need."""
        m = self.model
        y = m.trunk_out(m.trunk.decode(self.pool(state, f), state.trunk, f.ends))
        state.ctx.copy_(torch.where(f.need.unsqueeze(-1), self.commit_scale(y, f), state.ctx))

    def back(self, x, state: DecodeState, f: Front, run_aux: bool) -> torch.Tensor:
        """Decoder and head -> state.logits [B, 256]; each slot's events."""
        m, st = self.model, state
        d = m.decoder.decode(m.decoder_input(x, f.h, f.aux_h, st.ctx), st.decoder, None, self.decoder_reset(f))
        st.logits.copy_(m.head_logits(d))
        ran = {"bytes": st.active, "commits": f.ends, "scratchpads": f.scratch, "keys": f.need,
               "aux": st.active if run_aux else torch.zeros_like(st.active)}
        inc = torch.stack([ran[name] for name in ROW]).long()
        inc[ROW["keys"]] *= st.counts[ROW["commits"]] + 1  # a trunk step in patch p reads p entries and itself
        st.counts += inc
        return st.logits

    # the window each slot's open patch is pooled from (oldest first) ------------------------
    def _window(self, state: DecodeState, f: Front):
        W = self.cfg.longest_patch
        ring = torch.arange(W, device=f.ring_pos.device)
        order = (f.ring_pos.unsqueeze(1) + 1 + ring) % W
        win = state.pool_ring.gather(1, order.unsqueeze(-1).expand(-1, -1, state.pool_ring.shape[-1]))
        return ring, order, win

    def _pool_window(self, state: DecodeState, f: Front):
        """Pool every slot's open patch up to this byte -> [B, d_model]."""
        ring, _, win = self._window(state, f)
        return self.model.pooling(win, ring >= self.cfg.longest_patch - f.open_len.unsqueeze(1))

    # study variants --------------------------------------------------------------------------
    def _pool_soft(self, state: DecodeState, f: Front):
        """Soft pooling: Gaussian weights over every byte seen in the window, centred on the patch."""
        ring, order, win = self._window(state, f)
        W, st = self.cfg.longest_patch, state
        seen = st.counts[ROW["bytes"]] + 1
        valid = (ring >= W - seen.unsqueeze(1)) | (ring == W - 1)
        centre = st.counts[ROW["commits"]].to(st.ctx.dtype) + 0.5
        return self.model.pooling(win, valid, st.coord_ring.gather(1, order), centre)

    @staticmethod
    def _keep_coord(state: DecodeState, rows, ring_pos, coord):
        """Soft patcher: the byte's coordinate beside its features."""
        state.coord_ring[rows, ring_pos] = coord

    @staticmethod
    def _router_scale(y, f: Front):
        """Router: the straight-through confidence factor of the parallel forward (value 1)."""
        return y * (f.prob + (1 - f.prob)).unsqueeze(-1)


def _ignore(*args):
    return None


def _unscaled(y, f: Front):
    return y


def _patch_start(f: Front):
    """Patch-AR decoder: its state restarts at the first byte of each patch."""
    return f.open_len == 1


def _no_reset(f: Front):
    return None
