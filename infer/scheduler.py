"""Continuous batching over the runner's fixed slots.

Each `step`: drop cancelled sequences, admit waiting ones into free slots (prefill by the
parallel forward into that slot), sample the next byte of every slot on the device, read the
bytes back once, stream them and apply each sequence's stop rules on the host, make sure every
slot owns the KV page its next commit writes, and run one decode step for all slots together.
A finished or cancelled sequence frees its slot at once for the next waiting one. An exception
ends only the sequence it is pinned to (reason "error"); see `_isolate` for the batched step.

Past the model's context (cfg.max_seq_len bytes) a sequence either slides (default: its slot is
re-prefilled from the last 3/4 of the context, counted in Generation.slides) or stops with
reason "limit" (context="stop"); it never stops silently.
"""
from __future__ import annotations

import threading
from collections import deque

import torch

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
        self.errors = 0                  # engine exceptions so far (each pinned or isolated)
        self.last_error: str | None = None

    # requests ----------------------------------------------------------------------------------
    def submit(self, seq: Sequence) -> Sequence:
        seq.request.validate()
        seq.trigger = seq.request.trigger.for_model(self.runner.cfg)
        with self.lock:
            self.waiting.append(seq)
        return seq

    def cancel(self, seq: Sequence):
        """Thread-safe: the sequence stops (reason "cancelled") and frees its slot at the next step."""
        seq.cancelled = True

    def cancel_all(self):
        """Thread-safe: every running and waiting sequence stops at the next step (shutdown)."""
        with self.lock:
            seqs = list(self.waiting) + list(self.running.values())
        for seq in seqs:
            seq.cancelled = True

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    @property
    def active_slots(self) -> int:
        return len(self.running)

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
        """Advance every running sequence by one byte; returns the sequences that finished.
        An exception is pinned to the sequence it came from, which ends with reason "error"
        (Sequence.error); the others go on (see _isolate for the batched step)."""
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
        logprobs = self._logprobs(nxt)
        slides = []
        for slot, seq in list(self.running.items()):
            try:
                self._advance(seq, host_bytes[slot], host_len[slot], slides, finished, logprobs.get(slot))
            except Exception as e:  # its callback or its pages: this sequence alone
                self._fail(seq, e, finished)
        if self.running:
            try:
                r.step(nxt)
            except Exception as e:
                self._isolate(nxt, e, finished)
            self.steps += 1
        for seq in slides:  # after the step, which stepped the slot on a byte it will not keep
            if seq.done:
                continue
            seq.events.add(st.events(seq.slot))
            seq.slides += 1
            self._guarded_prefill(seq, self.keep, finished)
        return finished

    def _logprobs(self, nxt: torch.Tensor) -> dict:
        """slot -> (the sampled byte's log-prob, [(byte, log-prob)] top-k) for the sequences that
        asked (Request.logprobs = k), from the logits the byte was sampled from (no temperature)."""
        want = {slot: s.request.logprobs for slot, s in self.running.items() if s.request.logprobs is not None}
        if not want:
            return {}
        slots = torch.tensor(list(want), device=nxt.device)
        lp = self.runner.state.logits[slots].double().log_softmax(-1)
        chosen = lp.gather(1, nxt[slots].unsqueeze(1)).squeeze(1).tolist()
        values, index = lp.topk(max(want.values()) or 1, -1)
        values, index = values.tolist(), index.tolist()
        return {slot: (chosen[r], list(zip(index[r][:k], values[r][:k]))) for r, (slot, k) in enumerate(want.items())}

    def _advance(self, seq: Sequence, byte: int, trunk_len: int, slides: list, finished: list, logprob=None):
        """Append the sampled byte (and its log-probs when asked) to `seq` and apply its stop
        rules (host side of a step)."""
        req, st = seq.request, self.runner.state
        if req.eos_byte is not None and byte == req.eos_byte:
            self._finish(seq, "eos", finished)
            return
        seq.output.append(byte)
        if logprob is not None:
            seq.logprobs.append(logprob)
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
            if trunk_len % st.pages.page == 0:  # the next commit starts a new page
                st.pages.ensure(seq.slot, trunk_len)

    def run(self) -> None:
        while self.has_work():
            self.step()

    # isolation ---------------------------------------------------------------------------------
    def _isolate(self, nxt: torch.Tensor, error: Exception, finished: list):
        """The batched step raised, so no slot's state can be trusted. Replay the step for each
        running sequence alone (every other slot cleared): one that fails alone gets the error
        (reason "error"). Then every survivor is re-prefilled from its context, which is the
        state the step would have left (incremental decode == the parallel forward)."""
        self.errors += 1
        self.last_error = f"{type(error).__name__}: {error}"
        r = self.runner
        seqs = [s for s in self.running.values() if s.fed < self.limit]  # a sliding one is re-prefilled anyway
        for seq in seqs:
            for other in self.running.values():
                if other is not seq:
                    self._clear(other.slot)
            try:
                before = seq.history()[:-1][-(seq.fed - 1):]  # what the slot held before the step
                r.prefill(seq.slot, torch.tensor(list(before), dtype=torch.long), seq.trigger)
                r.step(nxt)
            except Exception as e:
                self._fail(seq, e, finished)
        for seq in list(self.running.values()):
            if seq.fed < self.limit:
                self._guarded_prefill(seq, seq.fed, finished)
        self._update_flags()

    def _clear(self, slot: int):
        """Take a slot out of a replay: its caches reset, inactive, no trigger can fire on it."""
        self.runner.state.reset(slot)

    def _guarded_prefill(self, seq: Sequence, keep: int, finished: list):
        """(Re)load `seq` into its slot from its last `keep` bytes; a failure is this sequence's."""
        try:
            self._prefill(seq, keep)
        except Exception as e:
            self._fail(seq, e, finished)

    def _fail(self, seq: Sequence, error: Exception, finished: list):
        """End `seq` with reason "error" and what was raised; its slot, if any, is freed."""
        self.errors += 1
        seq.error = self.last_error = f"{type(error).__name__}: {error}"
        seq.exception = error
        if seq.slot is not None and self.running.get(seq.slot) is seq:
            self._finish(seq, "error", finished)
        else:
            seq.stop_reason = "error"
            self._done(seq, finished)

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
            self.running[seq.slot] = seq
            try:
                self.runner.sampler.configure(seq.slot, req.temperature, req.top_k, req.top_p, req.seed,
                                              counter=len(seq.output))
                self._prefill(seq, self.limit - 1 if not seq.output else self.keep)
            except Exception as e:  # this request's settings or prompt: it alone fails
                self._fail(seq, e, finished)
                continue
            self._update_flags()

    def _prefill(self, seq: Sequence, keep: int):
        """Load the last `keep` bytes of the sequence's prompt and output into its slot."""
        ctx = seq.context(keep)
        self.runner.prefill(seq.slot, torch.tensor(list(ctx), dtype=torch.long), seq.trigger)
        seq.fed = len(ctx)

    def _finish(self, seq: Sequence, reason: str, finished: list):
        st = self.runner.state
        slot = seq.slot
        seq.events.add(st.events(slot))
        seq.kv_bytes = st.pages.pages_held(slot) * st.pages.page * self.runner.kv_bytes_per_position
        seq.stop_reason = reason
        st.active[slot] = False
        st.pages.reset(slot)
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
        self.runner.update_aux(any(s.trigger.entropy for s in seqs))
