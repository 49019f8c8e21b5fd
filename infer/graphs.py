"""The decode step captured as CUDA graphs (used by ModelRunner when the device is CUDA).

The step is static (fixed slots, masks instead of gathers, the trunk pass always runs and the
write mask decides commit vs transient, a fixed number of KV pages is read), so a graph replays
it with a single launch: one graph per aux mode and per bucket of pages read
(kv_pages.span_bucket). Warm-up runs on a side stream against a snapshot of the state, which is
restored afterwards, so capturing never changes a sequence in flight. The page pool is
preallocated to its worst case so its tensors never move; if they do (pool growth), the graphs
are captured again.

Not yet run on a GPU: the session that built it had none. The static step it captures runs on
CPU with Engine(model, static=True), where tests/test_engine.py checks it against the parallel
forward; the capture and replay themselves are untested.
"""
from __future__ import annotations

import torch

from scratchpad.mixers import AttentionCache, SSMState


def state_tensors(state) -> list[torch.Tensor]:
    """Every tensor the decode step reads or writes."""
    out = [state.pages.table, state.pool_ring, state.coord_ring, state.ctx, state.counts, state.tau, state.every,
           state.active, state.logits, *vars(state.patcher).values()]
    for layer in state.encoder + state.aux + state.decoder + state.trunk:
        if isinstance(layer, SSMState):
            out.append(layer.h)
        elif isinstance(layer, AttentionCache):
            out += [layer.k, layer.v, layer.length]
        else:  # PagedCache
            out += [layer.k, layer.v]
    return out


class StepGraphs:
    def __init__(self, runner, warmup: int = 2):
        self.runner, self.warmup = runner, warmup
        runner.static = True
        self.x = torch.zeros(runner.slots, dtype=torch.long, device=runner.device)
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.grown = runner.state.pages.grown

    def run(self, x: torch.Tensor) -> torch.Tensor:
        r = self.runner
        if r.state.pages.grown != self.grown:  # the page pool moved: capture again
            self.graphs.clear()
            self.grown = r.state.pages.grown
        pages = r.state.pages
        pages.round_span()
        key = (r.run_aux, pages.fixed_span)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.graphs[key] = self._capture(r.run_aux)
        self.x.copy_(x)
        graph.replay()
        return r.state.logits

    def _capture(self, run_aux: bool) -> torch.cuda.CUDAGraph:
        r = self.runner
        tensors = state_tensors(r.state)
        saved = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(side), torch.no_grad():
                for _ in range(self.warmup):
                    r._step(self.x, run_aux)
        finally:
            torch.cuda.current_stream().wait_stream(side)
            for t, s in zip(tensors, saved):
                t.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            r._step(self.x, run_aux)
        return graph
