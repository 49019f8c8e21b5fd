"""The decode step as CUDA graphs replay it (ModelRunner on CUDA), and its CPU stand-in
(ModelRunner static=True, which tests/test_engine.py checks against the parallel forward).

Per byte the host replays two of three pieces, each captured at fixed shapes (fixed slots, masks
instead of gathers, a fixed number of KV pages read): `front` (encoder, aux stack, patcher,
feature ring; which slots commit or scratch), then, after reading back whether any slot needs
the trunk (the step's one read-back), `trunk_back` (one trunk pass, the write mask deciding
commit vs transient per slot; decoder; head) or `back` (decoder and head). The trunk thus runs
at exactly the bytes where eager decode runs it. Graphs: front and back per aux mode, trunk_back
per aux mode and bucket of KV pages read (runner.span_bucket), all in one memory pool. The
front's outputs stay at the addresses captured, and the later pieces read them there; on CPU
the front's outputs are copied into the same kind of fixed buffers, and each piece runs either
directly (the stand-in) or compiled by Inductor and replayed on those buffers
(compiled=True: infer/compiled_step.py, the CPU-compiled decode).

Capturing warms the pieces up (twice; on a side stream on CUDA) against a snapshot of the state,
restored afterwards, so capturing never changes a sequence in flight. The page pool is
preallocated to its worst case (one patch per byte in every slot), so its tensors never move.
A capture that fails raises GraphCaptureError (ModelRunner falls back to eager decode only when
asked to). Not yet run on a GPU: the CPU stand-in and the compiled replay run the same host
logic, warm-up and buffers.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

from infer.compiled_step import compile_replay
from scratchpad.errors import UserError
from scratchpad.step import Front


class GraphCaptureError(UserError):
    """Capturing the decode step failed: `failure` says how, the message adds the way out."""

    def __init__(self, failure: str):
        super().__init__(f"{failure}; --eager-fallback (Engine(eager_fallback=True)) decodes without graphs")
        self.failure = failure


class StepGraphs:
    def __init__(self, runner, cuda: bool, warmup: int = 2, compiled: bool = False):
        """cuda=False: on the CPU, the pieces run directly (the stand-in) or, compiled=True, as
        Inductor replays; either way through the same host logic."""
        self.runner, self.cuda, self.warmup, self.compiled = runner, cuda, warmup, compiled
        self.pool = torch.cuda.graph_pool_handle() if cuda else None  # shared by every graph
        self.x = torch.zeros(runner.slots, dtype=torch.long, device=runner.device)
        self.front_out: dict[bool, tuple] = {}  # run_aux -> the front's outputs + any(need) [], fixed buffers
        self.replays: dict[tuple, Callable[[], object]] = {}  # piece key -> replay

    def prepare(self):
        """Capture the first step's pieces for both aux modes now (a capture that fails, fails at
        start-up, not in the middle of a request)."""
        r = self.runner
        r.round_span()
        for run_aux in sorted({r.cfg.aux_runs(False), r.cfg.aux_runs(True)}):
            self._ensure(self._keys(run_aux, r.state.pages.span))

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """Feed byte x [B] to every slot -> state.logits [B, 256]."""
        r = self.runner
        r.round_span()
        front, back, trunk_back = keys = self._keys(r.run_aux, r.state.pages.span)
        self._ensure(keys)
        self.x.copy_(x)
        self.replays[front]()
        if bool(self.front_out[r.run_aux][-1]):  # the one read-back: some slot commits or scratches
            r.trunk_passes += 1
            self.replays[trunk_back]()
        else:
            self.replays[back]()
        return r.state.logits

    @staticmethod
    def _keys(run_aux: bool, span: int) -> tuple:
        return ("front", run_aux), ("back", run_aux), ("trunk_back", run_aux, span)

    def _pieces(self, run_aux: bool) -> dict[str, Callable[[], object]]:
        r = self.runner

        def front():
            out = r._front(self.x, run_aux)
            return (*out, out.need.any())

        def captured_front() -> Front:
            return Front(*self.front_out[run_aux][:-1])

        return {"front": front,
                "back": lambda: r._back(self.x, run_aux, captured_front()),
                "trunk_back": lambda: r._trunk_back(self.x, run_aux, captured_front())}

    @torch.no_grad()
    def _ensure(self, keys: tuple):
        """Capture the pieces of `keys` not captured yet: warm up, record, restore the state."""
        missing = [k for k in keys if k not in self.replays]
        if not missing:
            return
        r = self.runner
        pieces = self._pieces(keys[0][1])
        tensors = r.state.tensors()
        saved = [t.clone() for t in tensors]
        side = torch.cuda.Stream() if self.cuda else None
        try:
            if side is not None:
                side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side) if side is not None else contextlib.nullcontext():
                for _ in range(self.warmup):
                    front = Front(*pieces["front"]()[:-1])
                    r._trunk_back(self.x, keys[0][1], front)
                    r._back(self.x, keys[0][1], front)
            if side is not None:
                torch.cuda.current_stream().wait_stream(side)
            for key in missing:  # front first: the others are recorded reading its outputs
                self.replays[key] = self._record(key, pieces[key[0]])
        except Exception as e:
            what = "CUDA graphs" if self.cuda else "a compiled step" if self.compiled else "a static step"
            reason = (str(e).strip().splitlines() or [""])[0]
            raise GraphCaptureError(f"capturing the decode step as {what} failed ({type(e).__name__}: {reason})") from e
        finally:
            for t, s in zip(tensors, saved):
                t.copy_(s)

    def _record(self, key: tuple, piece: Callable[[], object]) -> Callable[[], object]:
        """A replay of piece(): a CUDA graph in the shared pool, or on CPU the piece (compiled or
        as it is) with the front's outputs copied into fixed buffers. The front's buffers go to
        front_out."""
        if self.cuda:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                out = piece()
            if key[0] == "front":
                self.front_out[key[1]] = out
            return graph.replay
        if key[0] == "front":
            buffers = self.front_out[key[1]] = tuple(None if t is None else t.clone() for t in piece())
            front = piece

            def into_buffers():
                for buffer, t in zip(buffers, front()):
                    if buffer is not None:
                        buffer.copy_(t)

            piece = into_buffers
        return compile_replay(piece) if self.compiled else piece
