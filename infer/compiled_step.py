"""The CPU-compiled decode step: each piece of the step (infer/graphs.py) compiled once by Inductor
and then replayed, that is called directly on the tensors it was compiled against, the way a CUDA
graph replays on fixed addresses.

A piece takes no arguments: it reads and writes fixed tensors only (the model's weights, the
decode state, the step's input and output buffers; the page pool is preallocated so nothing
moves). Dynamo traces it once into one graph; the capturing backend keeps Inductor's compiled
function and the exact tensors Dynamo gathered as its inputs, and the replay calls that function
on them. Called through torch.compile instead, each call re-ran Dynamo's frame evaluation, its
guard checks and the gathering of ~100 inputs from the state's attributes: about 65 µs of a
~120 µs front piece on one core (profiled), twice per byte.

Decode at a few slots multiplies [B, K] rows by weight matrices; `inductor` has Inductor
write those products as loops fused with the norms and activations around them (`row_products`).
On this CPU (one core, default model, every 4th byte, alternated in one process) that took batch
1 from 1,475 to 2,823 bytes/s for SP and from 469 to 1,039 for the byte baseline, and SP at batch
4 from 3,162 to 5,145 (the baseline: 1,071 vs 1,030). At batch 16 the GEMM library is better
for SP (11,560 vs 7,953) and worse for the baseline (2,750 vs 6,299), so rows > 4 keep it.
"""
from __future__ import annotations

import types
from typing import Callable

import torch

aten = torch.ops.aten
SMALL_ROWS = 4  # products of at most this many rows [B, K] @ [K, N] become fused loops


def row_products(rows: int = SMALL_ROWS) -> dict:
    """Inductor's decompositions plus mm and addmm of at most `rows` rows as an elementwise product
    summed over K: Inductor fuses it with the norm before and the activation or residual after
    into a few vectorised C++ loops, where the default calls a GEMM library per product."""
    from torch._inductor.decomposition import select_decomp_table  # Inductor loads only to compile

    def mm(a, b):
        if a.shape[0] > rows:
            return NotImplemented
        return (a.unsqueeze(2) * b.unsqueeze(0)).sum(1)

    def addmm(bias, a, b, beta=1, alpha=1):
        if a.shape[0] > rows or beta != 1 or alpha != 1:
            return NotImplemented
        return bias + (a.unsqueeze(2) * b.unsqueeze(0)).sum(1)

    return {**select_decomp_table(), aten.mm.default: mm, aten.addmm.default: addmm}


def inductor(gm: torch.fx.GraphModule, example_inputs: list):
    """Inductor with its C++ wrapper (a piece's kernels run without Python between them), the
    small products as fused loops (`row_products`) and no checks of the inputs' sizes and
    alignment: a replay passes the very tensors compiled against."""
    import torch._inductor.config as config
    from torch._inductor.compile_fx import compile_fx

    wanted = {"cpp_wrapper": True, "size_asserts": False, "alignment_asserts": False, "scalar_asserts": False}
    settings = {k: v for k, v in wanted.items() if hasattr(config, k)}  # an older torch lacks some asserts
    return compile_fx(gm, example_inputs, config_patches=settings, decompositions=row_products())


def compile_replay(piece: Callable[[], object], backend=None) -> Callable[[], object]:
    """Compile piece() once (it runs once, compiled) and return its replay. `backend(gm, inputs)`
    compiles Dynamo's graph (default: `inductor`; tests use one that runs the graph as traced).
    Raises what the backend raised, Dynamo's error for a graph break, or RuntimeError when the
    piece does not trace into exactly one graph."""
    captured = []

    def capture(gm, example_inputs):
        compiled = (backend or inductor)(gm, example_inputs)
        captured.append((compiled, tuple(example_inputs)))
        return compiled

    # Dynamo caches compiled frames per code object: another runner's piece (same code, other
    # tensors) could be handed back without calling the backend. A fresh code object is compiled.
    fresh = types.FunctionType(piece.__code__.replace(), piece.__globals__, piece.__name__,
                               piece.__defaults__, piece.__closure__)
    try:
        torch.compile(fresh, backend=capture, fullgraph=True, dynamic=False)()
    except torch._dynamo.exc.BackendCompilerFailed as e:  # say what the compiler raised, not Dynamo's wrapper
        raise getattr(e, "inner_exception", e) from e
    if len(captured) != 1:
        raise RuntimeError(f"the step piece traced into {len(captured)} graphs, not one")
    compiled, inputs = captured[0]
    if any(not isinstance(t, torch.Tensor) or isinstance(t, torch._subclasses.FakeTensor) for t in inputs):
        raise RuntimeError("the step piece's graph takes inputs other than fixed tensors")
    return lambda: compiled(*inputs)
