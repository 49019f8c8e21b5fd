"""Continuous batching over the runner's fixed slots.

Each `step`: drop cancelled sequences, admit waiting ones into free slots (prefill by the
parallel forward into that slot), sample the next byte of every slot on the device, read the
bytes back once, stream them and apply each sequence's stop rules on the host, make sure every
slot owns the KV page its next commit writes, and run one decode step for all slots together.
A finished or cancelled sequence frees its slot at once for the next waiting one.

Past the model's context (cfg.max_seq_len bytes) a sequence either slides (default: its slot is
re-prefilled from the last 3/4 of the context, counted in Generation.slides) or stops with
reason "limit" (context="stop"); it never stops silently.
"""
from __future__ import annotations

import math
import threading
from collections import deque

import torch

from infer.options import effective_every, effective_threshold
from infer.runner import ModelRunner
from infer.sequence import Sequence


class Scheduler:
    def __init__(self, runner: ModelRunner, context: str = "slide"):
        if context not in ("slide", "stop"):
            raise ValueError(f"context must be 'slide' or 'stop', got {context!r}")
        self.runner, self.context = runner, context
        self.limit = runner.cfg.max_seq_len
        self.keep = max(1, self.limit * 3 // 4)
        self.waiting: deque[Sequence] = deque()
        self.running: dict[int, Sequence] = {}
        self.free = list(range(runner.slots - 1, -1, -1))
        self.lock = threading.Lock()
        self.any_random = False
        self.steps = 0

    # requests ----------------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> Sequence:
        seq.request.validate()
        with self.lock:
            self.waiting.append(seq)
        return seq

    def cancel(self, seq: Sequence):
        """Thread-safe: the sequence stops (reason "cancelled") and frees its slot at the next step."""
        seq.cancelled = True

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def active_slots(self) -> int:
        return len(self.running)

    def tau_of(self, seq: Sequence) -> float:
        return effective_threshold(self.runner.cfg, seq.request.threshold)

    def abort_all(self):
        """End every running and waiting sequence (reason "cancelled") after an engine failure."""
        finished: list[Sequence] = []
        for seq in list(self.running.values()):
            self._finish(seq, "cancelled", finished)
        with self.lock:
            waiting, self.waiting = list(self.waiting), deque()
        for seq in waiting:
            seq.stop_reason = "cancelled"
            self._done(seq, finished)

    # one iteration -----------------------------------------------------------------------------
    @torch.no_grad()
    def step(self) -> list[Sequence]:
        """Advance every running sequence by one byte; returns the sequences that finished."""
        finished: list[Sequence] = []
        for seq in [s for s in self.running.values() if s.cancelled]:
            self._finish(seq, "cancelled", finished)
        self._admit(finished)
        if not self.running:
            return finished
        r = self.runner
        st = r.state
        nxt = r.sampler(st.logits, st.active, self.any_random)
        host_bytes, host_len = torch.stack([nxt, st.trunk_length]).tolist()  # the one read-back per step
        slides = []
        for slot, seq in list(self.running.items()):
            req = seq.request
            byte = host_bytes[slot]
            if req.eos_byte is not None and byte == req.eos_byte:
                self._finish(seq, "eos", finished)
                continue
            seq.output.append(byte)
            if seq.on_bytes is not None:
                seq.on_bytes(seq, bytes([byte]))
            if any(seq.output.endswith(s) for s in req.stop):
                self._finish(seq, "stop_string", finished)
            elif len(seq.output) >= req.max_bytes:
                self._finish(seq, "max_bytes", finished)
            elif seq.fed >= self.limit:
                if self.context == "stop":
                    self._finish(seq, "limit", finished)
                else:
                    slides.append(seq)
            else:
                seq.fed += 1
                if host_len[slot] % st.pages.page == 0:  # the next commit starts a new page
                    st.pages.ensure(slot, host_len[slot])
        if self.running:
            r.step(nxt)
            self.steps += 1
        for seq in slides:  # after the step, which stepped the slot on a byte it will not keep
            seq.events.add(st.events(seq.slot))
            seq.slides += 1
            self._prefill(seq)
        return finished

    def run(self) -> None:
        while self.has_work():
            self.step()

    # slots -------------------------------------------------------------------------------------
    def _admit(self, finished):
        while self.free:
            with self.lock:
                if not self.waiting:
                    return
                seq = self.waiting.popleft()
            if seq.cancelled:
                seq.stop_reason = "cancelled"
                self._done(seq, finished)
                continue
            seq.slot = self.free.pop()
            req = seq.request
            self.runner.sampler.configure(seq.slot, req.temperature, req.top_k, req.top_p, req.seed,
                                          counter=len(seq.output))
            self.running[seq.slot] = seq
            self._prefill(seq)
            self.runner.state.active[seq.slot] = True
            self._update_flags()

    def _prefill(self, seq: Sequence):
        ctx = seq.context(self.limit - 1 if not seq.output else self.keep)
        self.runner.prefill(seq.slot, torch.tensor(list(ctx), dtype=torch.long), self.tau_of(seq),
                            effective_every(self.runner.cfg, seq.request.scratch_every))
        seq.fed = len(ctx)

    def _finish(self, seq: Sequence, reason: str, finished: list):
        st = self.runner.state
        slot = seq.slot
        seq.events.add(st.events(slot))
        seq.kv_bytes = st.pages.pages_held(slot) * st.pages.page * self.runner.kv_bytes_per_position
        seq.stop_reason = reason
        st.active[slot] = False
        st.pages.release(slot)
        del self.running[slot]
        self.free.append(slot)
        self._update_flags()
        self._done(seq, finished)

    @staticmethod
    def _done(seq: Sequence, finished: list):
        finished.append(seq)
        if seq.on_done is not None:
            seq.on_done(seq)

    def _update_flags(self):
        seqs = self.running.values()
        self.any_random = any(s.request.temperature > 0 for s in seqs)
        self.runner.update_aux(any(math.isfinite(self.tau_of(s)) for s in seqs))
