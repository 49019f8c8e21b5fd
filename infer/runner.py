"""The model runner: the model's decode state over fixed slots, and how its per-byte step runs.

The math is the model's (scratchpad/step.py: front, trunk, back; scratchpad/decode.py: the
state and the prefill hand-off). The runner decides how the pieces run: eagerly, captured as
CUDA graphs (infer/graphs.py), compiled by Inductor and replayed the same way on CPU
(infer/compiled_step.py), or as the graphs' plain CPU stand-in (static=True). Per byte it runs
`front`, reads back one flag (does any slot commit or scratch?) and then `trunk_back` (trunk
pass, decoder, head) or `back` (decoder, head) alone: the trunk runs only where some slot needs
it, in every mode alike (`trunk_passes` counts those steps). A captured or compiled step reads
the held KV pages rounded up to a bucket (`span_bucket`).
"""
from __future__ import annotations

import sys

import torch

from infer.graphs import GraphCaptureError, StepGraphs
from infer.sampling import SlotSampler
from scratchpad.decode import DecodeState
from scratchpad.step import ByteStep, Front
from scratchpad.trigger import Trigger


def span_bucket(n: int) -> int:
    """The smallest of 1, 2, 3, 4, 6, 8, 12, 16, 24, ... (powers of two and their midpoints) that
    is >= n (n >= 1): a compiled or captured step sees a few KV spans over a sequence's life, not
    one per page, and reads at most half again as many pages as held (powers of two alone read up
    to twice as many: 32 for the byte baseline's 22 after 344 bytes)."""
    power = 1 << (n - 1).bit_length()
    return power * 3 // 4 if power >= 4 and n <= power * 3 // 4 else power


class ModelRunner:
    def __init__(self, model, slots: int, device=None, page: int = 16, compile: bool = False,
                 cuda_graphs: bool = True, static: bool = False, eager_fallback: bool = False):
        """compile=True (without CUDA graphs) compiles each piece of the step with Inductor and
        replays it on fixed buffers (infer/compiled_step.py); static=True runs the pieces as they
        are through the same host logic, warm-up and buffers: CPU tests of what graphs replay. A
        failed capture or compile raises GraphCaptureError unless eager_fallback (then: a note,
        eager decode, and self.fallback holds the reason)."""
        if model.training:
            raise ValueError("the engine needs a model in eval mode (call model.eval() first): training mode "
                             "drops scratchpads at random; the engine does not change the mode for you")
        p = next(model.parameters())
        self.model, self.cfg = model, model.cfg
        self.device = torch.device(device) if device else p.device
        self.dtype = p.dtype
        cuda = self.device.type == "cuda" and cuda_graphs
        graphs = cuda or static or compile
        worst = 1 + slots * -(-(model.cfg.max_seq_len + 1) // page)  # every slot one patch per byte
        self.state: DecodeState = model.allocate_state(slots, self.device, self.dtype, page, worst if graphs else None)
        self.step_fn = ByteStep(model)
        self.run_aux = self.cfg.aux_runs(False)  # does a step run the aux stack (see update_aux)
        self.sampler = SlotSampler(slots, self.device)
        self.kv_bytes_per_position = sum(c.bytes_per_position for c in self.state.pages.caches)
        self.eager_fallback, self.fallback = eager_fallback, None
        self.trunk_passes = 0  # steps that ran the trunk pass (for all slots at once)
        self.graphs = None
        if graphs:
            self.graphs = StepGraphs(self, cuda, compiled=compile and not cuda)
            self._fall_back_on_failure(self.graphs.prepare)

    @property
    def slots(self) -> int:
        return self.state.slots

    @property
    def step_kind(self) -> str:
        """How steps run now: cuda-graphs, static (their CPU stand-in), compiled or eager."""
        if self.graphs is None:
            return "eager"
        return "cuda-graphs" if self.graphs.cuda else "compiled" if self.graphs.compiled else "static"

    def update_aux(self, entropy_trigger: bool):
        """Whether steps run the aux stack (ModelConfig.aux_runs): for an entropy patcher, a decoder
        that reads it, or when some active slot has an entropy trigger and the model has scratchpads."""
        self.run_aux = self.cfg.aux_runs(entropy_trigger)

    def round_span(self):
        """Fix the KV pages a captured or compiled step reads at the held span's bucket."""
        pages = self.state.pages
        pages.fixed_span = min(pages.width, span_bucket(pages.held_span))

    # prefill -----------------------------------------------------------------------------------
    def prefill(self, slot: int, prompt: torch.Tensor, trigger: Trigger):
        """Load `slot` from the parallel forward over prompt [n] (n >= 1) at `trigger` (the model's
        effective one: Trigger.for_model); the slot is active, state.logits[slot] its next-byte logits."""
        self.model.load_state(self.state, slot, prompt, trigger)

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
        """Eager: front, then trunk + back where some slot commits or scratches, else back alone."""
        front = self._front(x, run_aux)
        if bool(front.need.any()):
            self.trunk_passes += 1
            return self._trunk_back(x, run_aux, front)
        return self._back(x, run_aux, front)

    # the pieces, over this runner's state ------------------------------------------------------
    def _front(self, x, run_aux: bool) -> Front:
        return self.step_fn.front(x, self.state, run_aux)

    def _trunk_back(self, x, run_aux: bool, front: Front) -> torch.Tensor:
        self.step_fn.trunk(self.state, front)
        return self.step_fn.back(x, self.state, front, run_aux)

    def _back(self, x, run_aux: bool, front: Front) -> torch.Tensor:
        return self.step_fn.back(x, self.state, front, run_aux)
