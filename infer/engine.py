"""The generation engine: the public face of runner (how the model's step runs), scheduler
(continuous batching over fixed slots) and sequences (requests).

    engine = Engine(model)                      # model in eval mode; the engine never changes it
    engine.generate("Once upon a time", max_bytes=64, threshold=1.5)
    engine.generate([b"abc", "def"], temperature=0.8, seed=1, scratch_every=4)

threshold and scratch_every enter as one Trigger (scratchpad/trigger.py), checked once. A model
trained without scratchpads (cfg.scratchpad False) never runs them: the trigger has no effect.
"""
from __future__ import annotations

import torch

from infer.options import as_prompts
from infer.runner import ModelRunner
from infer.sampling import DEFAULT_TEMPERATURE
from infer.scheduler import Scheduler
from infer.sequence import Generation, Request, Sequence
from scratchpad.accounting import Events
from scratchpad.errors import UserError
from scratchpad.trigger import DEFAULT_TAU, Trigger
from scratchpad.vocab import DOCUMENT_SEPARATOR


class Engine:
    def __init__(self, model, device=None, page: int = 16, compile: bool = False, context: str = "slide",
                 static: bool = False, eager_fallback: bool = False):
        if model.training:
            raise ValueError("Engine needs a model in eval mode (call model.eval() first): training mode drops "
                             "scratchpads at random, and the engine does not change the mode for you")
        self.model, self.cfg = model, model.cfg
        self.device, self.page, self.compile, self.context = device, page, compile, context
        self.static = static  # the step as CUDA graphs replay it (see ModelRunner), for CPU tests
        self.eager_fallback = eager_fallback  # a failed graph capture decodes eagerly instead of raising
        self._runners: dict[int, ModelRunner] = {}
        self.last_events: list[Events] = []

    @property
    def scratchpads_enabled(self) -> bool:
        """False for a model trained with scratchpad=False: tau has no effect there."""
        return bool(self.cfg.scratchpad)

    def runner(self, slots: int) -> ModelRunner:
        if slots not in self._runners:
            self._runners[slots] = self._new_runner(slots)
        return self._runners[slots]

    def _new_runner(self, slots: int) -> ModelRunner:
        return ModelRunner(self.model, slots, self.device, self.page, self.compile, static=self.static,
                           eager_fallback=self.eager_fallback)

    def scheduler(self, slots: int) -> Scheduler:
        """A continuous-batching scheduler over `slots` fixed slots (used by `scratchpad serve`)."""
        return Scheduler(self.runner(slots), self.context)

    # whole requests ----------------------------------------------------------------------------
    def generate(self, prompts, max_bytes: int = 256, threshold=DEFAULT_TAU, temperature: float = DEFAULT_TEMPERATURE, top_k: int = 0,
                 top_p: float = 1.0, seed: int | None = None, stop=None, eos_byte: int | None = DOCUMENT_SEPARATOR,
                 on_bytes=None, max_batch: int | None = None, scratch_every: int = 0,
                 trigger: Trigger | None = None) -> list[Generation]:
        """Generate up to max_bytes per prompt (bytes, str or a list of them). A scratchpad runs
        where the aux entropy exceeds `threshold` and, when scratch_every = k > 0, at every k-th
        byte of a patch; or instead of both, at one `trigger`. Row i samples with seed + i.
        `on_bytes(row, bytes)` streams each new byte. A prompt longer than the context keeps its
        last bytes; generation past the context slides (see Generation.slides)."""
        prompts = as_prompts(prompts)
        if not prompts:
            return []
        if trigger is None:
            trigger = Trigger(threshold, scratch_every)
        elif (threshold, scratch_every) != (DEFAULT_TAU, 0):
            raise ValueError("give a trigger or threshold / scratch_every, not both")
        stop = [s.encode() if isinstance(s, str) else bytes(s) for s in (stop or [])]
        reqs = [Request(p, max_bytes, trigger, temperature, top_k, top_p, None if seed is None else seed + i,
                        stop, eos_byte) for i, p in enumerate(prompts)]
        for r in reqs:
            r.validate()
        slots = min(len(prompts), max_batch or len(prompts))
        sched = self.scheduler(slots)
        self.last_runner = sched.runner
        cb = None if on_bytes is None else (lambda seq, data: on_bytes(seq.index, data))
        seqs = [sched.submit(Sequence(r, cb, index=i)) for i, r in enumerate(reqs)]
        sched.run()
        failed = [s for s in seqs if s.error is not None]  # the scheduler isolates; a library call raises
        if failed:  # what the first failed prompt raised (a closed pipe stays a BrokenPipeError)
            raise failed[0].exception
        return [s.result() for s in seqs]

    # teacher forcing (tests, eval) -------------------------------------------------------------
    @torch.no_grad()
    def teacher_force(self, x: torch.Tensor, threshold=None, prefill=0, scratch_every: int = 0) -> torch.Tensor:
        """Logits [B, T, 256] that incremental decode produces for bytes x [B, T]. The first
        `prefill` bytes (an int, or one per row) go through the parallel prefill; then every row
        steps from there. Compare with model(x, threshold=..., scratch_every=...).logits.
        self.last_events holds each row's counted events."""
        trigger = Trigger(threshold, scratch_every).for_model(self.cfg)
        B, T = x.shape
        if T > self.cfg.max_seq_len:
            raise UserError(f"{T} bytes exceed the model's context of {self.cfg.max_seq_len}")
        starts = [prefill] * B if isinstance(prefill, int) else list(prefill)
        r = self._new_runner(B)
        st = r.state
        r.update_aux(trigger.entropy)
        x = x.to(r.device)
        logits = torch.zeros(B, T, 256, device=r.device, dtype=r.dtype)
        for b, n in enumerate(starts):
            if n == 0:
                st.reset(b)
                st.trigger.set(b, trigger)
                st.active[b] = True
        for t in range(min(starts), T):
            for b, n in enumerate(starts):
                if n == t and n > 0:
                    r.prefill(b, x[b, :n], trigger)
                    logits[b, :n] = self.model(x[b : b + 1, :n], trigger=trigger).logits[0]
            self._ensure_pages(r)
            out = r.step(x[:, t])
            rows = [b for b in range(B) if starts[b] <= t]
            logits[rows, t] = out[rows]
        self._ensure_pages(r)
        self.last_events = [st.events(b) for b in range(B)]
        self.last_runner = r
        return logits

    @staticmethod
    def _ensure_pages(r: ModelRunner):
        """Every slot owns the page its next commit writes."""
        for b, n in enumerate(r.state.trunk_length.tolist()):
            r.state.pages.ensure(b, n)
