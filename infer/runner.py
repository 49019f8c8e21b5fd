"""The model runner: prefill into a slot, and one static decode step over all slots.

Per byte, for every slot at once: encoder step -> aux entropy (when any slot needs it) ->
patcher -> pooling-feature ring -> one trunk pass for all slots whose byte closes a patch
(commit: the write mask lets SSM states and KV advance) or whose entropy exceeds the slot's tau
(transient: the same pass, nothing written) -> decoder step -> logits. No `nonzero`, no row
gathers, no `.item()`: shapes are fixed by the slots, so the step can be compiled (CPU) or
captured as CUDA graphs (infer/graphs.py). Each byte reads back one flag, whether any slot needs
the trunk, and runs the trunk pass only then: eager, compiled and graphs alike.
"""
from __future__ import annotations

import sys

import torch

from infer.graphs import GraphCaptureError, StepGraphs
from infer.sampling import SlotSampler
from infer.state import BYTES, COMMITS, KEYS, SlotState, allocate_slots, reset_slot
from scratchpad.accounting import row_events
from scratchpad.layers import entropy_nats
from scratchpad.precision import configure_compile, skip_guard_checks


class ModelRunner:
    def __init__(self, model, slots: int, device=None, page: int = 16, compile: bool = False,
                 cuda_graphs: bool = True, static: bool = False, eager_fallback: bool = False):
        """static=True runs the step on CPU as CUDA graphs replay it (infer/graphs.py: the same
        pieces, host logic, warm-up and fixed buffers): CPU tests of what graphs replay. A failed
        capture raises GraphCaptureError unless eager_fallback (then: a note, eager decode, and
        self.fallback holds the reason)."""
        if model.training:
            raise ValueError("the engine needs a model in eval mode (call model.eval() first): training mode "
                             "drops scratchpads at random; the engine does not change the mode for you")
        p = next(model.parameters())
        self.model, self.cfg = model, model.cfg
        self.device = torch.device(device) if device else p.device
        self.dtype = p.dtype
        cuda = self.device.type == "cuda" and cuda_graphs
        graphs = cuda or static
        worst = 1 + slots * -(-(model.cfg.max_seq_len + 1) // page)  # every slot one patch per byte
        self.state: SlotState = allocate_slots(model, slots, self.device, self.dtype, page, worst if graphs else None)
        B, W = slots, self.cfg.longest_patch
        self.rows = torch.arange(B, device=self.device)
        self.ring = torch.arange(W, device=self.device)
        self.zero_entropy = torch.zeros(B, device=self.device, dtype=self.dtype)
        self.no_rows = torch.zeros(B, dtype=torch.bool, device=self.device)
        self.run_aux = self.cfg.aux_runs(False)  # does a step run the aux stack (see update_aux)
        self.sampler = SlotSampler(slots, self.device)
        self.kv_bytes_per_position = sum(c.bytes_per_position for c in self.state.pages.caches)
        self.eager_fallback, self.fallback = eager_fallback, None
        self.trunk_passes = 0  # steps that ran the trunk pass (for all slots at once)
        self._parts = (self._front, self._trunk_back, self._back)
        self._warm: set[tuple] = set()  # compiled pieces already run at a (piece, shape) key
        self.graphs = None
        if graphs:
            self.graphs = StepGraphs(self, cuda)
            self._fall_back_on_failure(self.graphs.prepare)
        elif compile:  # CPU: the pieces compiled with fixed shapes; the trunk pass reads the held
            # KV pages rounded up to a bucket (kv_pages.span_bucket: one compiled shape per bucket),
            # and still runs only at bytes where some slot commits or scratches. Inductor's C++
            # wrapper calls each piece's ~25 kernels and GEMMs without Python in between: 12-20%
            # less CPU time per byte at batch 1 (every 4th byte; three paired runs, same compile time)
            configure_compile()
            self._parts = tuple(torch.compile(f, dynamic=False, options={"cpp_wrapper": True}) for f in self._parts)
            self._skip_guards = skip_guard_checks()
        self.compiled = compile and not graphs

    @property
    def slots(self) -> int:
        return self.state.slots

    @property
    def step_kind(self) -> str:
        """How steps run now: cuda-graphs, static (their CPU stand-in), compiled or eager."""
        if self.graphs is not None:
            return "cuda-graphs" if self.graphs.cuda else "static"
        return "compiled" if self.compiled else "eager"

    def update_aux(self, finite_tau: bool):
        """Whether steps run the aux stack (ModelConfig.aux_runs): for an entropy patcher, a decoder
        that reads it, or when some active slot has a finite tau and the model has scratchpads."""
        self.run_aux = self.cfg.aux_runs(finite_tau)

    # prefill -----------------------------------------------------------------------------------
    @torch.no_grad()
    def prefill(self, slot: int, prompt: torch.Tensor, tau: float, every: int = 0):
        """Reset `slot`, run the parallel forward over prompt [n] (n >= 1) at the slot's triggers
        (tau, every) and load its caches; state.logits[slot] gets the next-byte logits."""
        m, st = self.model, self.state
        if m.training:
            raise ValueError("the engine's model was switched to training mode; call model.eval()")
        reset_slot(m, st, slot)
        n = prompt.numel()
        out = m(prompt.view(1, n).to(self.device), threshold=tau, scratch_every=every, keep_trace=True)
        tr, bnd = out.trace, out.trace["boundaries"]
        m.encoder.load(st.encoder, tr["encoder"], n, slot)
        m.aux.load(st.aux, tr["aux"], n, slot)
        m.decoder.load(st.decoder, tr["decoder"], n, slot)
        commits = int(out.ends.sum())
        st.pages.ensure(slot, commits)  # pages for the committed patches and the next one
        for block, layer, trace in zip(m.trunk.blocks, st.trunk, tr["trunk"]):
            if hasattr(layer, "pages"):
                layer.load(slot, trace[0][0], trace[1][0], commits)
            else:
                block.mixer.load(layer, trace, commits, slot)
        ends = out.ends[0].nonzero()
        last_end = int(ends[-1]) if len(ends) else -1
        ps = st.patcher
        ps.length[slot] = n - 1 - last_end
        ps.last_entropy[slot] = out.entropy[0, -1]
        ps.last_byte[slot] = prompt[-1]
        ps.last_hidden[slot] = tr["h"][0, -1]
        if bnd.z is not None:
            ps.coord[slot] = bnd.z[0, -1]
            ps.forced[slot] = bnd.forced[0].sum()
        W = self.cfg.longest_patch
        k = min(W, n)
        ring = torch.arange(n - k, n, device=self.device) % W
        st.pool_ring[slot, ring] = m.pooling.features(tr["h"][0, n - k :])
        if bnd.coord is not None:
            st.coord_ring[slot, ring] = bnd.coord[0, n - k :]
        st.ctx[slot] = tr["ctx"][0, -1]
        c, s, keys = row_events(out.ends, out.scratch)
        aux = n if self.cfg.aux_runs(tau != float("inf")) else 0
        st.counts[:, slot] = torch.tensor([n, int(c), int(s), int(keys), aux], device=self.device)
        st.tau[slot] = tau
        st.every[slot] = every
        st.logits[slot] = out.logits[0, -1]

    # decode ------------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Feed byte x [B] to every slot (free slots step on garbage) -> state.logits [B, 256]."""
        if self.graphs is not None and self._fall_back_on_failure(self.graphs.run, x):
            return self.state.logits
        return self._step(x, self.run_aux)

    def _fall_back_on_failure(self, action, *args) -> bool:
        """Run a graph action; False once a capture failed and the runner fell back to eager
        decode (only with eager_fallback: otherwise the GraphCaptureError propagates)."""
        try:
            action(*args)
            return True
        except GraphCaptureError as e:
            if not self.eager_fallback:
                raise
            print(f"note: {e.failure}; decoding eagerly (eager fallback)", file=sys.stderr)
            self.fallback = e.failure
            self.graphs, self.state.pages.fixed_span = None, None
            return False

    def _step(self, x, run_aux: bool):
        """front, then trunk + back where some slot commits or scratches, else back alone: two
        calls per byte."""
        front, trunk_back, back = self._parts
        shape = None
        if self.compiled:  # everything the compiled variants differ by (see _call)
            pages = self.state.pages
            pages.round_span()
            shape = (run_aux, pages.span, pages.capacity)
        out = self._call("front", front, shape, x, run_aux)
        if bool(out[4].any()):
            self.trunk_passes += 1
            return self._call("trunk_back", trunk_back, shape, x, run_aux, *out)
        return self._call("back", back, shape, x, run_aux, *out)

    def _call(self, name: str, piece, shape: tuple | None, *args):
        """Run one piece (shape None: not compiled). A compiled piece that already ran at this
        shape skips Dynamo's guard checks over its ~100 tensor inputs (batch 1 on one CPU core:
        +15% bytes/s, median of 12 alternated runs): shape holds everything its compiled variants
        differ by, so the cached graph is the one the guards would pick (tests/test_engine.py
        fails when it is not)."""
        if shape is None:
            return piece(*args)
        key = (name, *shape)
        if key not in self._warm:
            out = piece(*args)
            self._warm.add(key)
            return out
        with self._skip_guards:
            return piece(*args)

    def _front(self, x, run_aux: bool):
        """Encoder, aux stack and entropy, patcher, the feature ring; which slots commit or scratch."""
        m, st = self.model, self.state
        h = m.encoder.decode(m.embed(x), st.encoder)
        aux_h = m.aux.decode(h, st.aux) if run_aux else None
        entropy = entropy_nats(m.aux_logits(aux_h)) if run_aux else self.zero_entropy
        ps = st.patcher
        open_len = ps.length + 1                       # bytes of the open patch, this one included
        ends, coord, prob = m.patcher.step(x, h, entropy, ps)
        ends = ends & st.active
        ring_pos = st.counts[BYTES] % self.cfg.longest_patch  # the ring slot of this byte
        st.pool_ring[self.rows, ring_pos] = m.pooling.features(h)
        if coord is not None:
            st.coord_ring[self.rows, ring_pos] = coord
        every = (st.every > 0) & (open_len % st.every.clamp(min=1) == 0)
        scratch = ((entropy > st.tau) | every) & ~ends & st.active
        return h, aux_h, ends, scratch, ends | scratch, prob, open_len, ring_pos

    def _trunk_back(self, x, run_aux: bool, h, aux_h, ends, scratch, need, prob, open_len, ring_pos):
        self._trunk(ends, need, prob, open_len, ring_pos)
        return self._back(x, run_aux, h, aux_h, ends, scratch, need, prob, open_len, ring_pos)

    def _trunk(self, ends, need, prob, open_len, ring_pos):
        """One trunk pass for every slot: commits where `ends` (states and KV advance), transient
        elsewhere; ctx takes the output where `need`."""
        m, st = self.model, self.state
        seen, patch_index = st.counts[BYTES] + 1, st.counts[COMMITS]
        pooled = self._pool(ring_pos, open_len, seen, patch_index, st.ctx.dtype)
        y = m.trunk_out(m.trunk.decode(pooled, st.trunk, ends))
        if prob is not None:  # router straight-through factor, as in the parallel forward
            y = y * (prob + (1 - prob)).unsqueeze(-1)
        st.ctx.copy_(torch.where(need.unsqueeze(-1), y, st.ctx))

    def _back(self, x, run_aux: bool, h, aux_h, ends, scratch, need, prob, open_len, ring_pos):
        """Decoder and head -> state.logits; the slots' event counters."""
        m, st = self.model, self.state
        reset = (open_len == 1) if self.cfg.decoder == "patch-ar" else None
        d = m.decoder.decode(m.decoder_input(x, h, aux_h, st.ctx), st.decoder, None, reset)
        st.logits.copy_(m.head_logits(d))
        aux_rows = st.active if run_aux else self.no_rows
        inc = torch.stack([st.active, ends, scratch, need, aux_rows]).long()
        inc[KEYS] *= st.counts[COMMITS] + 1  # a trunk step in patch p reads p committed entries and itself
        st.counts += inc
        return st.logits

    def _pool(self, ring_pos, open_len, seen, patch_index, dtype):
        """Pool every slot's open patch up to this byte from the feature ring (oldest first)."""
        st, W = self.state, self.cfg.longest_patch
        order = (ring_pos.unsqueeze(1) + 1 + self.ring) % W
        win = st.pool_ring.gather(1, order.unsqueeze(-1).expand(-1, -1, st.pool_ring.shape[-1]))
        if self.cfg.pooling == "soft":
            valid = (self.ring >= W - seen.unsqueeze(1)) | (self.ring == W - 1)
            return self.model.pooling(win, valid, st.coord_ring.gather(1, order), patch_index.to(dtype) + 0.5)
        return self.model.pooling(win, self.ring >= W - open_len.unsqueeze(1))
